"""Server-side sessions: opaque cookie, new id at sign-in, instant sign-out by row deletion."""

from datetime import timedelta

import pytest
from flask import Blueprint, jsonify, session
from sqlalchemy import select

from idp.db import db
from idp.models import User, UserSession
from idp.security import digest
from idp.sessions import service

probe = Blueprint("probe", __name__)


@probe.get("/probe/sign-in/<int:user_id>")
@probe.get("/admin/probe/sign-in/<int:user_id>")
def sign_in(user_id):
    service.start_session(db.session.get(User, user_id))
    db.session.commit()
    return "ok"


@probe.get("/probe/put/<value>")
def put(value):
    session["value"] = value
    return "ok"


@probe.get("/probe/whoami")
@probe.get("/admin/probe/whoami")
def whoami():
    return jsonify(user_id=getattr(session, "user_id", None), value=session.get("value"))


@probe.get("/probe/sign-out")
def sign_out():
    service.end_current_session()
    return "ok"


@pytest.fixture
def app(app):
    app.register_blueprint(probe)
    return app


def cookie(client, name="idp_session"):
    return client.get_cookie(name)


def test_no_row_and_no_cookie_until_something_is_stored(client, app):
    client.get("/probe/whoami")
    assert cookie(client) is None
    with app.app_context():
        assert db.session.scalar(select(UserSession)) is None


def test_cookie_holds_only_an_opaque_id_and_row_holds_the_data(client, app):
    client.get("/probe/put/hello")
    value = cookie(client)
    assert value is not None and len(value.value) >= 43 and "hello" not in value.value
    assert value.http_only and value.same_site == "Lax"
    with app.app_context():
        row = db.session.scalar(select(UserSession))
        assert row.id_digest == digest(value.value) and row.data == {"value": "hello"}
    assert client.get("/probe/whoami").get_json()["value"] == "hello"


def test_sign_in_issues_a_new_id_and_deletes_the_old_row(client, app, make_user):
    user = make_user()
    client.get("/probe/put/before")
    before = cookie(client).value
    client.get(f"/probe/sign-in/{user.id}")
    after = cookie(client).value
    assert after != before
    with app.app_context():
        rows = list(db.session.scalars(select(UserSession)))
        assert [(r.user_id, r.id_digest) for r in rows] == [(user.id, digest(after))]
        assert rows[0].token_version == 1 and rows[0].auth_time is not None
    assert client.get("/probe/whoami").get_json()["user_id"] == user.id


def test_deleting_the_row_signs_the_browser_out_at_next_request(client, app, make_user):
    user = make_user()
    client.get(f"/probe/sign-in/{user.id}")
    with app.app_context():
        service.end_all_for_user(user.id, reason="admin", actor="test")
        db.session.commit()
    assert client.get("/probe/whoami").get_json()["user_id"] is None
    assert cookie(client) is None  # the stale cookie is cleared


def test_token_version_bump_ends_the_session(client, app, make_user):
    from idp.users.service import bump_token_version

    user = make_user()
    client.get(f"/probe/sign-in/{user.id}")
    with app.app_context():
        bump_token_version(db.session.get(User, user.id), reason="test", actor="test")
        db.session.commit()
    assert client.get("/probe/whoami").get_json()["user_id"] is None


def test_idle_and_absolute_timeouts(client, app, make_user):
    user = make_user()
    client.get(f"/probe/sign-in/{user.id}")
    with app.app_context():
        row = db.session.scalar(select(UserSession))
        row.last_seen_at -= timedelta(seconds=app.config["SSO_SESSION_IDLE_TTL"] + 1)
        db.session.commit()
    assert client.get("/probe/whoami").get_json()["user_id"] is None
    client.get(f"/probe/sign-in/{user.id}")
    with app.app_context():
        row = db.session.scalar(select(UserSession))
        row.expires_at = row.created_at
        db.session.commit()
    assert client.get("/probe/whoami").get_json()["user_id"] is None


def test_sign_out_deletes_row_and_cookie(client, app, make_user):
    user = make_user()
    client.get(f"/probe/sign-in/{user.id}")
    client.get("/probe/sign-out")
    assert cookie(client) is None
    with app.app_context():
        assert db.session.scalar(select(UserSession)) is None


def test_admin_paths_use_their_own_strict_cookie(client, app, make_user, monkeypatch):
    from admin_ui import auth

    # /admin needs a signed-in admin: let the probe sign in without the admin login form.
    monkeypatch.setattr(auth, "PUBLIC_ENDPOINTS", auth.PUBLIC_ENDPOINTS | {"probe.sign_in"})
    user = make_user(is_admin=True)
    client.get(f"/admin/probe/sign-in/{user.id}")
    admin = cookie(client, "idp_admin")
    assert admin is not None and admin.same_site == "Strict" and admin.http_only
    assert cookie(client) is None
    assert client.get("/probe/whoami").get_json()["user_id"] is None  # an admin session is not an SSO session
    assert client.get("/admin/probe/whoami").get_json()["user_id"] == user.id


def test_https_issuer_gives_secure_host_prefixed_cookies(make_app):
    app = make_app(ISSUER="https://login.example.com")
    app.register_blueprint(probe)
    client = app.test_client()
    client.get("/probe/put/x", base_url="https://login.example.com")
    value = client.get_cookie("__Host-idp_session", domain="login.example.com")
    with app.app_context():
        db.engine.dispose()  # a second app: close its pooled connection rather than leave it to the GC
    assert value is not None and value.secure and value.path == "/" and value.domain in (None, "", "login.example.com")
