"""Passkeys over HTTP with a software authenticator: every bad WebAuthn answer is refused, audited, and writes nothing."""

from __future__ import annotations

from sqlalchemy import select
from webauthn.helpers import bytes_to_base64url

from idp.db import db
from idp.models import AuditEvent, Passkey
from tests.mfa.authenticator import SoftAuthenticator
from tests.mfa.conftest import PASSWORD, csrf_token
from tests.mfa.test_totp import _sign_in_to_account

ORIGIN, RP_ID = "http://localhost", "localhost"


def _options(client, path: str, page: str) -> dict:
    token = csrf_token(client.get(page).get_data(as_text=True))
    response = client.post(path, headers={"X-CSRFToken": token})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def _submit(client, path: str, page: str, credential: str, **fields):
    token = csrf_token(client.get(page).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, "credential": credential, **fields})


def _register(client, authenticator, **bend):
    options = _options(client, "/account/passkeys/options", "/account/security")
    return _submit(client, "/account/passkeys", "/account/security", authenticator.create(options, origin=bend.pop("origin", ORIGIN), **bend), name="Laptop")


def _passkey_sign_in(client, authenticator, options: dict | None = None, **bend):
    options = options or _options(client, "/login/passkey/options", "/login")
    return _submit(client, "/login/passkey", "/login", authenticator.get(options, origin=bend.pop("origin", ORIGIN), **bend), next="/account")


def _refusals(app) -> list[str]:
    with app.app_context():
        return [event.details["reason"] for event in db.session.scalars(select(AuditEvent).where(AuditEvent.action == "mfa.passkey_refused").order_by(AuditEvent.id))]


def _passkeys(app) -> list[Passkey]:
    with app.app_context():
        return list(db.session.scalars(select(Passkey)))


def test_bad_webauthn_answers_are_refused_audited_and_write_nothing(app, client, user):
    _sign_in_to_account(client, user.email)
    key = SoftAuthenticator()

    # Registration: malformed, another origin, another RP id, then a good one, then its replay.
    malformed = _submit(client, "/account/passkeys", "/account/security", "{not json")
    assert malformed.status_code == 400 and "malformed" in malformed.get_data(as_text=True)
    assert _register(client, key, origin="https://evil.example").status_code == 400
    assert _register(client, key, rp_id="evil.example").status_code == 400
    assert _passkeys(app) == [] and len(_refusals(app)) == 3
    options = _options(client, "/account/passkeys/options", "/account/security")
    answer = key.create(options, origin=ORIGIN)
    added = _submit(client, "/account/passkeys", "/account/security", answer, name="  My <b>laptop</b>  ")
    assert added.status_code == 302
    page = client.get("/account/security").get_data(as_text=True)
    assert "My &lt;b&gt;laptop&lt;/b&gt;" in page and "this device only" in page
    replayed = _submit(client, "/account/passkeys", "/account/security", answer, name="again")
    assert replayed.status_code == 400 and "expired or was already used" in replayed.get_data(as_text=True)
    assert len(_passkeys(app)) == 1
    client.delete_cookie("idp_session")

    # Sign-in: another challenge, origin, RP id, a bad signature, an unknown credential; then a good one and its replay.
    made_up = {"challenge": "A" * 43, "rpId": RP_ID}
    assert _passkey_sign_in(client, key, made_up).status_code == 400
    assert _passkey_sign_in(client, key, origin="https://evil.example").status_code == 400
    assert _passkey_sign_in(client, key, rp_id="evil.example").status_code == 400
    assert _passkey_sign_in(client, key, corrupt=True).status_code == 400
    stranger = SoftAuthenticator()
    stranger.user_handle = key.user_handle
    unknown = _passkey_sign_in(client, stranger)
    assert unknown.status_code == 400 and "not registered here" in unknown.get_data(as_text=True)
    assert client.get("/account").status_code == 302  # still signed out
    assert _passkeys(app)[0].last_used_at is None and len(_refusals(app)) == 9

    options = _options(client, "/login/passkey/options", "/login")
    answer = key.get(options, origin=ORIGIN)
    signed_in = _submit(client, "/login/passkey", "/login", answer, next="/account")
    assert signed_in.status_code == 302 and signed_in.location == "/account"
    assert client.get("/account").status_code == 200
    client.delete_cookie("idp_session")
    assert _submit(client, "/login/passkey", "/login", answer, next="/account").status_code == 400
    used = _passkeys(app)[0]
    assert used.sign_count == key.count and used.last_used_at is not None

    # A counter that went backwards: refused, the clone warning audited, the stored counter kept.
    key.count -= 3
    cloned = _passkey_sign_in(client, key)
    assert cloned.status_code == 400 and "counter went backwards" in cloned.get_data(as_text=True)
    assert _passkeys(app)[0].sign_count == used.sign_count
    with app.app_context():
        warning = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "mfa.passkey_clone_warning"))
        assert warning.details["stored"] == used.sign_count and warning.details["presented"] < used.sign_count
    assert len(_refusals(app)) == 11 and client.get("/account").status_code == 302


def test_a_passkey_as_second_factor_and_its_removal_after_the_password(app, client, user):
    _sign_in_to_account(client, user.email)
    key = SoftAuthenticator(backed_up=True)
    assert _register(client, key).status_code == 302
    client.delete_cookie("idp_session")

    # Password, then the passkey: both factors; a passkey of someone else's does not count.
    # The password step starts in an anonymous session (its CSRF token in a signed cookie, no row):
    # the waiting state gets the session its row, and the anonymous form's token carries over.
    login = client.get("/login?next=/account")
    assert client.get_cookie("idp_session") is None and client.get_cookie("idp_session_anon") is not None
    anonymous_token = csrf_token(login.get_data(as_text=True))
    answer = client.post("/login?next=/account", data={"username": user.email, "password": PASSWORD, "next": "/account",
                                                        "csrf_token": anonymous_token})
    assert answer.location == "/login/second-factor"
    assert client.get_cookie("idp_session") is not None and client.get_cookie("idp_session_anon") is None
    wrong = client.post("/login/second-factor", data={"csrf_token": anonymous_token, "code": "not-a-recovery-code"})
    assert wrong.status_code == 401 and "wrong, expired or already used" in wrong.get_data(as_text=True)
    page = client.get("/login/second-factor").get_data(as_text=True)
    assert "Use a passkey" in page and "A recovery code" in page
    options = _options(client, "/login/second-factor/passkey/options", "/login/second-factor")
    assert [entry["id"] for entry in options["allowCredentials"]] == [bytes_to_base64url(key.credential_id)]
    assert _submit(client, "/login/second-factor/passkey", "/login/second-factor", SoftAuthenticator().get(options, origin=ORIGIN)).status_code == 400
    options = _options(client, "/login/second-factor/passkey/options", "/login/second-factor")
    done = _submit(client, "/login/second-factor/passkey", "/login/second-factor", key.get(options, origin=ORIGIN))
    assert done.status_code == 302 and done.location == "/account"
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "mfa.signed_in"))
        assert event.details["amr"] == ["pwd", "swk", "user", "mfa"]

    # Removing it needs the password again.
    passkey_id = _passkeys(app)[0].id
    wrong = _submit(client, f"/account/passkeys/{passkey_id}/remove", "/account/security", "", password="wrong password")
    assert wrong.status_code == 400 and "Incorrect password." in wrong.get_data(as_text=True) and len(_passkeys(app)) == 1
    right = _submit(client, f"/account/passkeys/{passkey_id}/remove", "/account/security", "", password=PASSWORD)
    assert right.status_code == 302 and _passkeys(app) == []

    # Re-entered passwords go through the sign-in throttle: past its limit even the right one waits.
    app.config["LOGIN_THROTTLE_PER_ACCOUNT"] = 2
    for _ in range(2):
        assert _submit(client, "/account/recovery-codes", "/account/security", "", password="wrong password").status_code == 400
    throttled = _submit(client, "/account/recovery-codes", "/account/security", "", password=PASSWORD)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert "Too many failed attempts. Try again in" in throttled.get_data(as_text=True)
