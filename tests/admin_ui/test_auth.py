"""Admin authentication: sign-in, throttling, the /admin guard, re-authentication, headers, cookies."""

from __future__ import annotations

from datetime import timedelta

import pytest

from idp.db import db
from idp.models import AuditEvent, LoginThrottle, User, UserSession
from idp.security import digest
from tests.admin_ui.conftest import PASSWORD, AdminBrowser, admin_session_rows, audit_actions

# Every admin URL, with placeholders filled by the test (GET pages and POST actions alike).
GET_PAGES = [
    "/admin/", "/admin/users", "/admin/users/new", "/admin/users/{user}", "/admin/users/{user}/edit",
    "/admin/users/{user}/password", "/admin/users/{user}/disable", "/admin/users/{user}/grant-admin",
    "/admin/users/{user}/revoke-admin", "/admin/users/{user}/sign-out", "/admin/users/{user}/delete", "/admin/clients", "/admin/clients/new",
    "/admin/clients/{client}", "/admin/clients/{client}/edit", "/admin/clients/{client}/rotate-secret",
    "/admin/clients/{client}/delete", "/admin/sessions", "/admin/throttles", "/admin/keys", "/admin/jobs", "/admin/audit", "/admin/reauth",
    "/admin/no-such-page",
]


def urls(user_id: int, client_id: str) -> list[str]:
    return [url.format(user=user_id, client=client_id) for url in GET_PAGES]


def test_sign_in_starts_a_fresh_admin_session(app, browser, admin):
    browser.get("/admin/login")
    # The anonymous form's CSRF token lives in a signed cookie, not in a row.
    assert browser.client.get_cookie("idp_admin") is None and admin_session_rows(app) == []
    anonymous = browser.client.get_cookie("idp_admin_anon")
    assert anonymous.http_only and anonymous.same_site == "Strict"
    response = browser.sign_in(admin.email)
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"
    cookie = browser.client.get_cookie("idp_admin")
    assert cookie.http_only and cookie.same_site == "Strict"
    assert browser.client.get_cookie("idp_admin_anon") is None
    rows = admin_session_rows(app)
    assert [(row.user_id, row.id_digest) for row in rows] == [(admin.id, digest(cookie.value))]
    assert {"user.signed_in", "session.started"} <= set(audit_actions(app, actor=f"user:{admin.id}"))
    page = browser.get("/admin/")
    assert page.status_code == 200 and "admin@example.com" in page.get_data(as_text=True)


def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(browser, admin):
    response = browser.get("/admin/users?q=al")
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/login?next=/admin/users?q%3Dal"
    signed = browser.post("/admin/login?next=/admin/users?q%3Dal", {"email": admin.email, "password": PASSWORD})
    assert signed.headers["Location"] == "/admin/users?q=al"
    for evil in ("https://evil.example/admin/", "//evil.example/admin", "/\\evil.example", "/elsewhere"):
        browser.post("/admin/logout", page="/admin/")
        again = browser.post(f"/admin/login?next={evil}", {"email": admin.email, "password": PASSWORD}, page="/admin/login")
        assert again.headers["Location"] == "/admin/", evil


def test_wrong_password_and_unknown_email_get_the_same_answer(app, browser, admin):
    wrong = browser.sign_in(admin.email, "not the password")
    unknown = browser.sign_in("nobody@example.com", "not the password")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "Wrong email or password." in response.get_data(as_text=True)
    assert admin_session_rows(app) == []  # still anonymous: no row
    # Counted like end-user sign-ins, so both forms spend one budget.
    assert audit_actions(app, action="user.sign_in_failed") == ["user.sign_in_failed"] * 2
    assert audit_actions(app, action="user.sign_in_failed", target=f"user:{admin.id}") == ["user.sign_in_failed"]


def test_a_user_without_admin_rights_cannot_sign_in(app, browser, make_user):
    user = make_user(email="user@example.com", password=PASSWORD)
    response = browser.sign_in(user.email)
    assert response.status_code == 403
    assert "does not have admin rights" in response.get_data(as_text=True)
    assert all(row.user_id is None for row in admin_session_rows(app))
    with app.app_context():
        event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "admin.sign_in_refused"))
        assert event.details == {"reason": "not_admin"} and event.target == f"user:{user.id}"


def test_a_disabled_admin_cannot_sign_in(app, browser, make_user):
    from idp.signout import disable_user

    user = make_user(email="old-admin@example.com", password=PASSWORD, is_admin=True)
    with app.app_context():
        disable_user(db.session.get(User, user.id), actor="test")
    assert browser.sign_in(user.email).status_code == 401


def test_sign_in_is_throttled_per_account_like_end_user_sign_in(app, browser, admin):
    for _ in range(app.config["LOGIN_THROTTLE_PER_ACCOUNT"]):
        assert browser.sign_in(admin.email, "guess").status_code == 401
    throttled = browser.sign_in(admin.email)  # even the right password is refused now, from this address
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["Retry-After"]) <= app.config["LOGIN_THROTTLE_BACKOFF_BASE"]
    assert "Too many failed sign-ins" in throttled.get_data(as_text=True)
    assert audit_actions(app, action="user.sign_in_failed") == ["user.sign_in_failed"] * 5  # refusals add nothing
    assert audit_actions(app, action="auth.throttled") == ["auth.throttled"]
    with app.app_context():  # let the back-off pass
        db.session.execute(db.update(LoginThrottle).values(blocked_until=0))
        db.session.commit()
    assert browser.sign_in(admin.email).status_code == 303


def test_sign_in_is_throttled_per_ip_across_accounts(app, browser, admin):
    app.config["LOGIN_THROTTLE_PER_IP"] = 3
    for n in range(3):
        assert browser.sign_in(f"guess{n}@example.com", "guess").status_code == 401
    assert browser.sign_in(admin.email).status_code == 429
    other_ip = AdminBrowser(app.test_client())
    response = other_ip.client.post("/admin/login", data={"email": admin.email, "password": PASSWORD,
                                                          "csrf_token": other_ip.token("/admin/login")},
                                     environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert response.status_code == 303


def test_anonymous_requests_to_any_admin_url_go_to_sign_in(app, browser, admin, make_client):
    registered, _ = make_client()
    for url in urls(admin.id, registered.client_id):
        response = browser.get(url)
        assert response.status_code == 303, url
        assert response.headers["Location"].startswith("/admin/login"), url
    assert browser.client.post("/admin/users/new", data={"csrf_token": browser.token("/admin/login")}).status_code == 303


def test_a_signed_in_user_without_admin_rights_gets_403_everywhere(app, make_user, make_client, admin):
    from idp.sessions.service import new_row

    user = make_user(email="plain@example.com")
    registered, _ = make_client()
    with app.app_context():  # an admin-kind session for a non-admin (e.g. rights revoked out of band)
        value, _ = new_row(app, "admin", db.session.get(User, user.id))
        db.session.commit()
    client = app.test_client()
    client.set_cookie("idp_admin", value)
    for url in urls(admin.id, registered.client_id):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "admin rights" in response.get_data(as_text=True)
    static = client.get("/admin/static/admin.css")
    assert static.status_code == 200
    static.close()


def test_sign_out_deletes_the_session_row(app, signed_in):
    response = signed_in.post("/admin/logout", page="/admin/")
    assert response.status_code == 303 and response.headers["Location"] == "/admin/login?signed_out=1"
    assert admin_session_rows(app) == []
    assert signed_in.get("/admin/").status_code == 303


def test_a_token_version_bump_ends_the_admin_session(app, signed_in, admin):
    from idp.users.service import bump_token_version

    with app.app_context():
        bump_token_version(db.session.get(User, admin.id), reason="test", actor="test")
        db.session.commit()
    assert signed_in.get("/admin/").status_code == 303


def test_idle_admin_session_ends(app, signed_in):
    with app.app_context():
        row = db.session.scalar(db.select(UserSession).where(UserSession.kind == "admin"))
        row.last_seen_at -= timedelta(seconds=app.config["ADMIN_SESSION_IDLE_TTL"] + 1)
        db.session.commit()
    assert signed_in.get("/admin/").status_code == 303


def age_authentication(app, seconds: int) -> None:
    with app.app_context():
        for row in db.session.scalars(db.select(UserSession).where(UserSession.kind == "admin")):
            row.auth_time -= timedelta(seconds=seconds)
        db.session.commit()


def test_sensitive_actions_need_a_recent_password(app, signed_in, make_user):
    user = make_user(email="soon-admin@example.com")
    url = f"/admin/users/{user.id}/grant-admin"
    assert signed_in.get(url).status_code == 200  # just signed in: recent enough
    age_authentication(app, app.config["ADMIN_REAUTH_MAX_AGE"] + 1)
    for response in (signed_in.get(url), signed_in.post(url, page="/admin/")):
        assert response.status_code == 303
        assert response.headers["Location"] == f"/admin/reauth?next={url}"
    with app.app_context():
        assert db.session.get(User, user.id).is_admin is False
    wrong = signed_in.post(f"/admin/reauth?next={url}", {"password": "nope"})
    assert wrong.status_code == 401 and "Wrong password." in wrong.get_data(as_text=True)
    right = signed_in.post(f"/admin/reauth?next={url}", {"password": PASSWORD})
    assert right.status_code == 303 and right.headers["Location"] == url
    assert signed_in.get(url).status_code == 200
    assert "admin.reauthenticated" in audit_actions(app)


def test_too_many_wrong_passwords_at_reauth_end_the_session(app, signed_in):
    for _ in range(app.config["LOGIN_THROTTLE_PER_ACCOUNT"]):
        assert signed_in.post("/admin/reauth", {"password": "nope"}).status_code == 401
    last = signed_in.post("/admin/reauth", {"password": PASSWORD})  # throttled: not even checked
    assert last.status_code == 303 and last.headers["Location"] == "/admin/login?signed_out=reauth"
    assert admin_session_rows(app) == []
    assert audit_actions(app, action="admin.reauth_failed") == ["admin.reauth_failed"] * 5
    with app.app_context():
        refused = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "auth.throttled"))
        assert refused.details["form"] == "admin_reauth" and refused.details["bucket"] == "account_ip"
    # The same budget as the sign-in form: from this address the admin is backed off there too.
    assert AdminBrowser(app.test_client()).sign_in("admin@example.com").status_code == 429


EXPECTED_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


@pytest.mark.parametrize("url", ["/admin/login", "/admin/", "/admin/users", "/admin/no-such-page", "/admin/static/admin.css", "/admin/users/999999"])
def test_security_headers_on_every_admin_response(signed_in, url):
    response = signed_in.get(url)
    response.close()
    for name, value in EXPECTED_HEADERS.items():
        assert response.headers[name] == value, (url, name)
    assert "Strict-Transport-Security" not in response.headers  # http issuer


def test_pages_carry_no_inline_script_or_style(signed_in, admin):
    for url in ["/admin/", "/admin/users", f"/admin/users/{admin.id}", "/admin/clients/new", "/admin/sessions", "/admin/audit"]:
        html = signed_in.get(url).get_data(as_text=True)
        assert "<script>" not in html and "style=" not in html and "<style" not in html and "onclick" not in html, url


def test_https_issuer_gets_hsts_and_host_prefixed_secure_cookie(make_app, admin):
    from tests.admin_ui.conftest import csrf_from

    app = make_app(ISSUER="https://idp.example.com")
    client = app.test_client()
    token = csrf_from(client.get("/admin/login", base_url="https://idp.example.com").get_data(as_text=True))
    # No Referer (browsers may strip it): the CSRF check must still pass.
    response = client.post("/admin/login", base_url="https://idp.example.com",
                           data={"email": admin.email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    cookie = client.get_cookie("__Host-idp_admin", domain="idp.example.com")
    assert cookie is not None and cookie.secure and cookie.http_only and cookie.same_site == "Strict" and cookie.path == "/"
    assert client.get("/admin/", base_url="https://idp.example.com").status_code == 200


def test_state_never_changes_on_get(app, signed_in, admin, make_user, make_client):
    from tests.admin_ui.conftest import snapshot

    user = make_user()
    registered, _ = make_client()
    before = snapshot(app)
    for url in urls(user.id, registered.client_id) + [f"/admin/users/{user.id}/enable", "/admin/sessions/revoke", "/admin/logout"]:
        signed_in.get(url)
    assert snapshot(app) == before
