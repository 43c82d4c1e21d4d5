"""Authenticator apps and recovery codes as a second step after the password, through a real code flow."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from idp.config import generate_key_encryption_key
from idp.db import db
from idp.errors import ValidationError
from idp.mfa import totp
from idp.models import AuditEvent, RecoveryCode, TotpFactor, User
from tests.mfa.conftest import PASSWORD, basic, claims_of, code_at, csrf_token, recovery_codes, shown_key
from tests.oidc.conftest import Authorization, query_of


def _sign_in_to_account(client, email: str):
    login = client.get("/login?next=/account/security")
    response = client.post("/login?next=/account/security", data={
        "username": email, "password": PASSWORD, "next": "/account/security", "csrf_token": csrf_token(login.get_data(as_text=True)),
    })
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def _enrol(client, post_form) -> tuple[str, str, list[str]]:
    """Set up the authenticator app from the account's security page; return (key, the code used, recovery codes)."""
    setup = post_form("/account/totp/setup", page="/account/security")
    assert setup.status_code == 200
    html = setup.get_data(as_text=True)
    key = shown_key(html)
    assert "<svg" in html and f"otpauth://totp/" in html and f"secret={key}" in html
    token = csrf_token(html)
    wrong = client.post("/account/totp/confirm", data={"csrf_token": token, "code": "000000" if code_at(key) != "000000" else "111111"})
    assert wrong.status_code == 400 and "wrong, expired or already used" in wrong.get_data(as_text=True)
    used = code_at(key)
    done = client.post("/account/totp/confirm", data={"csrf_token": token, "code": used})
    assert done.status_code == 200, done.get_data(as_text=True)
    codes = recovery_codes(done.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    return key, used, codes


def _second_step(oidc, rp, email: str, code: str, *, expect: int = 302, **overrides):
    """Authorize, enter the password, then `code` on the second-factor page: (answer, verifier)."""
    response, _, verifier = oidc.authorize(rp, **overrides)
    response = oidc.login(oidc.follow(response).request.full_path.rstrip("?"), email)
    assert response.status_code == 302 and response.location == "/login/second-factor", response.get_data(as_text=True)
    page = oidc.client.get("/login/second-factor")
    answer = oidc.client.post("/login/second-factor", data={"csrf_token": csrf_token(page.get_data(as_text=True)), "code": code})
    assert answer.status_code == expect, answer.get_data(as_text=True)
    return answer, verifier


def _tokens(oidc, rp, response, verifier: str) -> dict:
    """Follow the browser back through /authorize (and consent) to a code, and redeem it."""
    response = oidc.follow(response)
    if response.status_code == 200:
        response = oidc.follow(oidc.decide(response.request.full_path.rstrip("?")))
    assert response.status_code == 302 and response.location.startswith(rp.redirect_uri), response.get_data(as_text=True)
    authorization = Authorization(code=query_of(response.location)["code"], verifier=verifier, params={}, location=response.location)
    redeemed = oidc.redeem(rp, authorization)
    assert redeemed.status_code == 200, redeemed.get_data(as_text=True)
    return redeemed.get_json()


def _audited(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_totp_enrolment_second_step_amr_replay_throttle_and_recovery_codes(app, client, oidc, rp, user, post_form):
    app.config["LOGIN_THROTTLE_PER_ACCOUNT"] = 5
    _sign_in_to_account(client, user.email)
    assert "Set up an authenticator app" in client.get("/account/security").get_data(as_text=True)
    assert client.get("/account/totp/setup").status_code == 405  # GET never acts
    key, used, codes = _enrol(client, post_form)
    with app.app_context():
        factor = db.session.scalar(select(TotpFactor))
        assert factor.confirmed_at is not None and key not in factor.secret_encrypted
        digests = set(db.session.scalars(select(RecoveryCode.code_digest)))
        assert len(digests) == 10 and not any(code.replace("-", "") in digests for code in codes)
    assert "10</span> unused recovery codes left" in client.get("/account/security").get_data(as_text=True)
    client.delete_cookie("idp_session")

    # The code spent at enrolment is a replay now; the next step's code (one step of drift) works.
    _second_step(oidc, rp, user.email, used, expect=401)
    answer, verifier = _second_step(oidc, rp, user.email, code_at(key, steps_ahead=1))
    tokens = _tokens(oidc, rp, answer, verifier)
    id_token = claims_of(tokens["id_token"])
    assert id_token["amr"] == ["pwd", "otp", "mfa"] and id_token["acr"] == "2"
    introspected = oidc.client.post("/introspect", data={"token": tokens["access_token"]}, headers={"Authorization": basic(rp.client_id, rp.secret)}).get_json()
    assert introspected["active"] and introspected["amr"] == ["pwd", "otp", "mfa"] and introspected["acr"] == "2"

    # A recovery code works once, and the page says how many remain.
    client.delete_cookie("idp_session")
    answer, verifier = _second_step(oidc, rp, user.email, codes[0].upper(), expect=200)
    assert re.search(r'<strong id="recovery-left">9</strong>', answer.get_data(as_text=True))
    onward = re.search(r'<a href="([^"]+)">Continue</a>', answer.get_data(as_text=True)).group(1).replace("&amp;", "&")
    assert claims_of(_tokens(oidc, rp, oidc.client.get(onward), verifier)["id_token"])["amr"] == ["pwd", "otp", "mfa"]
    assert [event.details["remaining"] for event in _audited(app, "mfa.recovery_code_used")] == [9]
    client.delete_cookie("idp_session")
    _second_step(oidc, rp, user.email, codes[0], expect=401)

    # Wrong and expired codes are audited and throttled like passwords: five wrong since the last
    # right one (the reused recovery code counted too), and the sixth guess is refused unchecked.
    _second_step(oidc, rp, user.email, "12345678", expect=401)
    _second_step(oidc, rp, user.email, "999999" if code_at(key) != "999999" else "888888", expect=401)
    _second_step(oidc, rp, user.email, code_at(key, steps_ahead=-2), expect=401)  # expired: two steps old
    _second_step(oidc, rp, user.email, code_at(key, steps_ahead=-1), expect=401)  # a replay of an older step
    throttled, _ = _second_step(oidc, rp, user.email, codes[1], expect=429)  # a right code, left unchecked and unspent
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RecoveryCode).where(RecoveryCode.used_at.is_(None))) == 9
    assert "Too many wrong codes" in throttled.get_data(as_text=True) and int(throttled.headers["Retry-After"]) > 0
    failures = [event for event in _audited(app, "user.sign_in_failed") if event.target == f"mfa:user:{user.id}"]
    assert len(failures) == 6 and {event.details["factor"] for event in failures} == {"totp", "recovery_code"}
    assert [event.details["form"] for event in _audited(app, "auth.throttled") if event.target == f"mfa:user:{user.id}"] == ["second_factor"]


def test_rewrap_moves_authenticator_keys_to_the_newest_key_encryption_key(app, make_app, config, user):
    with app.app_context():
        factor_id = totp.begin_enrolment(db.session.get(User, user.id)).id
        secret = totp.secret_of(db.session.get(TotpFactor, factor_id))
        db.session.commit()
    new = generate_key_encryption_key()
    with make_app(KEY_ENCRYPTION_KEYS=[new]).app_context():
        with pytest.raises(ValidationError):
            totp.rewrap_secrets(actor="test")  # the old key is gone: refused, nothing changed
    with make_app(KEY_ENCRYPTION_KEYS=[new, *config["KEY_ENCRYPTION_KEYS"]]).app_context():
        assert totp.rewrap_secrets(actor="test") == 1
        db.session.commit()
    with make_app(KEY_ENCRYPTION_KEYS=[new]).app_context():
        assert totp.secret_of(db.session.get(TotpFactor, factor_id)) == secret
