"""The sign-in page: the form, CSRF, one generic failure, disabled users, audit and throttling."""

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from idp import security
from idp.auth import throttle
from idp.clock import utcnow
from idp.db import db
from idp.models import AuditEvent, LoginThrottle, UserSession
from tests.oidc.conftest import PASSWORD
from tests.oidc.flow import csrf_token, page_form


def login_page(client, path="/login"):
    page = client.get(path)
    assert page.status_code == 200
    return page.get_data(as_text=True)


def post_login(client, email, password=PASSWORD, path="/login", ip="203.0.113.7", **extra):
    form = {"username": email, "password": password, "csrf_token": csrf_token(login_page(client, path)), **extra}
    return client.post(path, data=form, environ_base={"REMOTE_ADDR": ip})


def sessions(app) -> list[UserSession]:
    with app.app_context():
        return list(db.session.scalars(select(UserSession).where(UserSession.user_id.is_not(None))))


def events(app, action) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_the_form_has_username_password_csrf_and_a_submit_button(client):
    form = page_form(login_page(client))
    assert {"username", "password", "csrf_token"} <= set(form["fields"])
    assert "Sign in" in login_page(client) and 'type="submit"' in login_page(client)


def test_without_csrf_token_nothing_happens(client, user, app):
    response = client.post("/login", data={"username": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert sessions(app) == []
    assert events(app, "user.signed_in") == []


def test_success_starts_a_new_session_and_audits_with_ip(client, user, app):
    login_page(client)  # the anonymous form's CSRF token is in a signed cookie: no row yet
    assert client.get_cookie("idp_session") is None and sessions(app) == []
    anonymous = client.get_cookie("idp_session_anon")
    assert anonymous.http_only and anonymous.same_site == "Lax"
    response = post_login(client, user.email)
    assert response.status_code == 200 and b"Signed in" in response.data
    assert client.get_cookie("idp_session") is not None and client.get_cookie("idp_session_anon") is None
    [row] = sessions(app)
    assert row.user_id == user.id
    [event] = events(app, "user.signed_in")
    assert event.target == f"user:{user.id}" and event.ip == "203.0.113.7"
    assert events(app, "session.started")


def test_email_is_case_insensitive(client, user, app):
    assert post_login(client, "  ALICE@Example.COM ").status_code == 200
    assert len(sessions(app)) == 1


@pytest.mark.parametrize("email, password", [("alice@example.com", "wrong password"), ("nobody@example.com", PASSWORD)])
def test_unknown_user_and_wrong_password_get_the_same_answer(client, user, app, email, password):
    response = post_login(client, email, password)
    assert response.status_code == 401
    body = response.get_data(as_text=True)
    assert "Incorrect email or password." in body
    assert "password" in page_form(body)["fields"]
    assert sessions(app) == []
    [event] = events(app, "user.sign_in_failed")
    assert event.ip == "203.0.113.7" and event.actor == "anonymous"


def test_both_failures_cost_one_argon2_verification(client, user, monkeypatch):
    calls = []

    class CountingHasher:
        """The real argon2 hasher, counting verifications."""

        def __init__(self, real):
            self.real = real

        def verify(self, *args):
            calls.append(1)
            return self.real.verify(*args)

        def __getattr__(self, name):
            return getattr(self.real, name)

    real = security.password_hasher
    monkeypatch.setattr(security, "password_hasher", lambda: CountingHasher(real()))
    post_login(client, "nobody@example.com", PASSWORD)
    post_login(client, user.email, "wrong password")
    assert calls == [1, 1]


def test_raised_argon2_parameters_rehash_the_password_at_the_next_sign_in(user, make_app):
    """The suite hashes with t=1, m=8 KiB; an app configured higher upgrades the stored hash on sign-in."""
    from idp.models import User

    stronger = make_app(ARGON2_TIME_COST=2, ARGON2_MEMORY_COST=16)

    def stored_hash() -> str:
        with stronger.app_context():
            return db.session.get(User, user.id).password_hash

    assert stored_hash().startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert post_login(stronger.test_client(), user.email, "wrong password").status_code == 401
    assert stored_hash() == user.password_hash  # a failed sign-in changes nothing
    assert post_login(stronger.test_client(), user.email).status_code == 200
    upgraded = stored_hash()
    assert upgraded.startswith("$argon2id$v=19$m=16,t=2,p=1$")
    with stronger.app_context():
        assert security.verify_password(upgraded, PASSWORD) == (True, None)  # no further rehash
    assert post_login(stronger.test_client(), user.email).status_code == 200 and stored_hash() == upgraded


def test_a_disabled_user_cannot_sign_in(client, user, app):
    from idp.signout import disable_user
    from idp.users.service import require_user

    with app.app_context():
        disable_user(require_user(user.email))
    response = post_login(client, user.email)
    assert response.status_code == 401 and b"Incorrect email or password." in response.data
    assert sessions(app) == []


@pytest.mark.parametrize("email, password", [("a" * 5000, PASSWORD), ("alice@example.com", "p" * 5000), ("", ""), ("\x00@x.y", "\x00")])
def test_oversized_or_empty_input_is_refused_plainly(client, user, app, email, password):
    response = post_login(client, email, password)
    assert response.status_code in (400, 401)
    assert sessions(app) == []


def test_a_waiting_authorization_request_continues_after_sign_in(oidc, rp, user):
    response, _, _ = oidc.authorize(rp)
    response = oidc.login(response.location, user.email)
    assert response.status_code == 302 and response.location.startswith("/authorize?")
    assert "client_id=" + rp.client_id in response.location


def test_an_unknown_request_id_just_signs_in(client, user):
    response = post_login(client, user.email, path="/login?rid=nonexistent", rid="nonexistent")
    assert response.status_code == 200 and b"Signed in" in response.data


# --- throttling -------------------------------------------------------------------------------------


def fail(client, email, times, ip="203.0.113.7"):
    for _ in range(times):
        assert post_login(client, email, "wrong password", ip=ip).status_code == 401


def end_back_offs(app) -> None:
    """Let every running back-off end now (the failures stay counted)."""
    with app.app_context():
        db.session.execute(update(LoginThrottle).where(LoginThrottle.blocked_until > 0).values(blocked_until=throttle.now_seconds()))
        db.session.commit()


def test_too_many_failures_back_off_the_address_even_with_the_right_password(client, user, app):
    app.config["LOGIN_THROTTLE_PER_ACCOUNT"] = 2
    fail(client, user.email, 2)
    response = post_login(client, user.email)
    assert response.status_code == 429 and b"Too many failed sign-ins. Try again in" in response.data
    assert 0 < int(response.headers["Retry-After"]) <= 30  # LOGIN_THROTTLE_BACKOFF_BASE
    assert sessions(app) == []
    [refused] = events(app, "auth.throttled")
    assert (refused.target, refused.ip) == (f"user:{user.id}", "203.0.113.7")
    assert refused.details == {"form": "login", "bucket": "account_ip", "retry_after": int(response.headers["Retry-After"])}
    assert len(events(app, "user.sign_in_failed")) == 2  # a refusal is not evaluated, nor counted again


def test_unknown_accounts_are_throttled_alike(client, user, app):
    app.config["LOGIN_THROTTLE_PER_ACCOUNT"] = 2

    def answers(email, ip):
        return [(r.status_code, "Retry-After" in r.headers) for r in (post_login(client, email, "wrong", ip=ip) for _ in range(3))]

    assert answers(user.email, "198.51.100.1") == answers("nobody@example.com", "198.51.100.2") == [(401, False)] * 2 + [(429, True)]


def test_the_back_off_doubles_with_each_failure_and_is_forgotten_after_a_quiet_window(client, user, app):
    app.config.update(LOGIN_THROTTLE_PER_ACCOUNT=2, LOGIN_THROTTLE_BACKOFF_BASE=10, LOGIN_THROTTLE_BACKOFF_CAP=15)
    fail(client, user.email, 2)
    back_offs = []
    for _ in range(2):
        assert (refused := post_login(client, user.email)).status_code == 429
        with app.app_context():
            back_offs.append(db.session.scalar(select(LoginThrottle.backoff).where(LoginThrottle.kind == "account_ip")))
        assert 0 < int(refused.headers["Retry-After"]) <= back_offs[-1]
        end_back_offs(app)
        fail(client, user.email, 1)  # one guess once a back-off ends, then a longer one
    assert back_offs == [10, 15]  # doubled, but capped
    with app.app_context():  # neither a failure nor a back-off for a whole window
        past = throttle.now_seconds() - app.config["LOGIN_THROTTLE_WINDOW"] - 1
        db.session.execute(update(LoginThrottle).values(blocked_until=past, last_failure_at=past))
        db.session.commit()
    fail(client, user.email, 1)  # counting starts again: one failure is below the limit
    assert post_login(client, user.email).status_code == 200


def test_a_success_clears_the_account_count(client, user, app):
    app.config["LOGIN_THROTTLE_PER_ACCOUNT"] = 3
    fail(client, user.email, 2)
    assert post_login(client, user.email).status_code == 200
    fail(client, user.email, 2)
    assert post_login(client, user.email).status_code == 200


def test_strangers_guessing_from_many_addresses_do_not_lock_the_owner_out_of_a_known_one(client, user, app):
    app.config.update(LOGIN_THROTTLE_PER_ACCOUNT=2, LOGIN_THROTTLE_PER_ACCOUNT_NEW_IPS=2)
    assert post_login(client, user.email, ip="192.0.2.10").status_code == 200  # the owner's usual network
    for n in range(2):
        fail(client, user.email, 1, ip=f"198.51.100.{n}")
    refused = post_login(client, user.email, ip="198.51.100.99")  # any new address, even with the password
    assert refused.status_code == 429
    assert events(app, "auth.throttled")[-1].details["bucket"] == "account"
    assert post_login(client, user.email, ip="192.0.2.10").status_code == 200


def test_too_many_failures_from_one_ip_lock_that_ip(client, user, make_user, app):
    app.config["LOGIN_THROTTLE_PER_IP"] = 4
    for n in range(3):
        fail(client, f"nobody{n}@example.com", 1, ip="198.51.100.9")
    # A success spends nothing, even when its own count reached the limit (a busy NAT is not locked by its users).
    assert post_login(client, user.email, ip="198.51.100.9").status_code == 200
    fail(client, "nobody3@example.com", 1, ip="198.51.100.9")
    assert post_login(client, user.email, ip="198.51.100.9").status_code == 429
    assert post_login(client, user.email, ip="198.51.100.10").status_code == 200
