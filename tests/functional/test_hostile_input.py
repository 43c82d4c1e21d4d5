"""Bad input found by fuzzing gets a 4xx and writes nothing: unstorable text, integers beyond a column, unparsable `next`."""

from __future__ import annotations

import base64
import json
import re

from idp.db import db
from idp.models import AuditEvent, User, UserSession
from tests.admin_ui.conftest import make_session

CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def rows(app) -> tuple[int, int, int]:
    with app.app_context():
        return tuple(db.session.scalar(db.select(db.func.count()).select_from(model)) for model in (User, UserSession, AuditEvent))


def cursor(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_unstorable_text_is_refused_with_400_wherever_it_comes_in(app, make_user, make_client):
    admin = make_user(email="admin@example.com", is_admin=True)
    client, secret = make_client()
    cookie, _ = make_session(app, admin.id, kind="admin")
    admin_cookie = {"Cookie": f"idp_admin={cookie}"}
    before = rows(app)
    http = app.test_client(use_cookies=False)
    answers = {
        "query": http.get("/admin/users?q=a%00b", headers=admin_cookie),
        "path": http.get("/admin/clients/x%00y", headers=admin_cookie),
        "form": http.post("/token", data={"grant_type": "client_credentials", "client_id": client.client_id,
                                          "client_secret": secret, "scope": "a\x00"}),
        "json": http.post("/revoke", data='{"token": "\\ud800"}', content_type="application/json"),
        "cookie": http.get("/account", headers={"Cookie": "idp_session=a\x00b"}),
        "header": http.get("/userinfo", headers={"Authorization": "Bearer a\x00b"}),
        "nested json": http.post("/token", data="[" * 100_000, content_type="application/json"),
        "multipart": http.post("/token", data=b"--b\r\n", content_type="multipart/form-data; boundary=b"),
    }
    assert {where: answer.status_code for where, answer in answers.items()} == {where: 400 for where in answers}
    assert answers["form"].get_json()["error"] == "invalid_request"  # the OAuth error code (RFC 6749 5.2)
    assert "<h1>400 Invalid Request</h1>" in answers["query"].get_data(as_text=True)
    assert rows(app) == before


def test_integers_beyond_a_column_are_404_in_routes_and_400_in_cursors(app, make_user):
    admin = make_user(email="admin@example.com", is_admin=True)
    cookie, _ = make_session(app, admin.id, kind="admin")
    http = app.test_client(use_cookies=False)
    headers = {"Cookie": f"idp_admin={cookie}"}
    for user_id in (2**31, 2**63, 10**40):
        assert http.get(f"/admin/users/{user_id}", headers=headers).status_code == 404
    assert http.get(f"/admin/users/{2**31 - 1}", headers=headers).status_code == 404  # in range: simply unknown
    for page in ("/admin/audit", "/admin/sessions", "/admin/clients"):
        too_big = cursor([{"dt": "2026-01-01T00:00:00+00:00"}, 2**63])
        assert http.get(f"{page}?after={too_big}", headers=headers).status_code == 400, page
    assert http.get(f"/admin/users?after={cursor(['a' + chr(0)])}", headers=headers).status_code == 400


def test_a_next_that_urlsplit_cannot_parse_is_ignored_after_signing_in(app, make_user):
    user = make_user(email="someone@example.com")
    http = app.test_client()
    page = http.get("/login?next=/%09/[x").get_data(as_text=True)
    token = next(group for group in CSRF_INPUT.search(page).groups() if group)
    response = http.post("/login?next=/%09/[x", data={"username": user.email, "password": "correct horse battery",
                                                       "next": "/\t/[x", "csrf_token": token})
    assert response.status_code == 200 and "Location" not in response.headers
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(UserSession).where(UserSession.user_id == user.id)) == 1
    for target in ("/\t/evil.example", "/%09/[x", "//evil.example", "/\\evil.example"):
        assert http.get(f"/login?next={target}").status_code == 200
