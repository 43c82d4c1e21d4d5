"""The Throttles page: backed-off accounts and addresses, and clearing one (POST with CSRF, audited)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from idp.db import db
from idp.models import AuditEvent, LoginThrottle, User
from idp.security import verify_password
from tests.admin_ui.conftest import PASSWORD, audit_actions, csrf_from

STRANGER = "198.51.100.7"


@pytest.fixture
def config(config):
    return {**config, "LOGIN_THROTTLE_PER_ACCOUNT": 2}  # every check is an argon2 hash: keep them few


def guess(app, email: str, password: str = "wrong") -> int:
    """One sign-in attempt on the end-user login page from the stranger's address."""
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": email, "password": password, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": STRANGER}).status_code


def test_admins_see_throttled_accounts_and_addresses_and_clear_one(app, signed_in, admin, make_user):
    user = make_user(email="alice@example.com", password=PASSWORD)
    for _ in range(app.config["LOGIN_THROTTLE_PER_ACCOUNT"]):
        assert guess(app, user.email) == 401
    assert guess(app, "nobody@example.com") == 401
    assert guess(app, user.email, PASSWORD) == 429

    page = signed_in.get("/admin/throttles").get_data(as_text=True)
    assert "Account from one address" in page and "alice@example.com" in page and STRANGER in page
    assert "unknown email" in page and "nobody@example.com" not in page  # unknown addresses stay hashed
    with app.app_context():
        pair = db.session.scalar(select(LoginThrottle).where(LoginThrottle.kind == "account_ip", LoginThrottle.account == f"user:{user.id}"))
        assert pair.failures == app.config["LOGIN_THROTTLE_PER_ACCOUNT"] and pair.blocked_until > 0
        key = pair.key

    # Without a CSRF token nothing changes; GET is not an action.
    assert signed_in.client.post("/admin/throttles/clear", data={"key": key}).status_code == 400
    assert signed_in.get("/admin/throttles/clear?key=" + key).status_code == 405
    assert guess(app, user.email, PASSWORD) == 429
    assert signed_in.post("/admin/throttles/clear", {"key": "pair:nope"}, page="/admin/throttles").status_code == 404

    cleared = signed_in.post("/admin/throttles/clear", {"key": key}, page="/admin/throttles")
    assert cleared.status_code == 303 and cleared.headers["Location"] == "/admin/throttles"
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "throttle.cleared"))
        assert (event.actor, event.target, event.ip, event.details) == (f"user:{admin.id}", f"user:{user.id}", STRANGER, {"bucket": "account_ip"})
    assert guess(app, user.email, PASSWORD) == 200  # checked again, and right


def test_a_stolen_cookie_cannot_guess_the_current_password_on_the_account_page(app, make_user):
    from tests.oidc.flow import csrf_token

    make_user(email="alice@example.com", password=PASSWORD)
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    assert client.post("/login", data={"username": "alice@example.com", "password": PASSWORD, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": STRANGER}).status_code == 200

    def change(current: str):
        token = csrf_token(client.get("/account").get_data(as_text=True))
        return client.post("/account/password", data={"current_password": current, "new_password": "a brand new password",
                                                      "confirm_password": "a brand new password", "csrf_token": token}, environ_base={"REMOTE_ADDR": STRANGER})

    for _ in range(app.config["LOGIN_THROTTLE_PER_ACCOUNT"]):
        assert change("a guess").status_code == 400
    refused = change(PASSWORD)  # not even checked
    assert refused.status_code == 429 and "Too many wrong passwords" in refused.get_data(as_text=True)
    assert int(refused.headers["Retry-After"]) > 0
    assert audit_actions(app, action="user.password_change_failed") == ["user.password_change_failed"] * 2
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "auth.throttled"))
        assert event.details["form"] == "password" and event.actor == event.target
    with app.app_context():  # nothing changed: the old password still holds
        user = db.session.scalar(select(User).where(User.email == "alice@example.com"))
        assert verify_password(user.password_hash, PASSWORD)[0]
