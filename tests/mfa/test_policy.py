"""Who must use a second factor (globally, per user, per client) and step-up by acr_values."""

from __future__ import annotations

import re

from idp.db import db
from idp.mfa import policy
from idp.models import TotpFactor
from tests.mfa.conftest import claims_of, code_at, csrf_token, recovery_codes, shown_key
from tests.mfa.test_totp import _sign_in_to_account, _tokens
from tests.oidc.conftest import query_of


def _password_step(oidc, rp, email: str, **overrides):
    """Authorize and enter the password; the response to the password (a redirect) and the PKCE verifier."""
    response, _, verifier = oidc.authorize(rp, **overrides)
    response = oidc.follow(response)
    assert b'name="password"' in response.data, response.get_data(as_text=True)
    return oidc.login(response.request.full_path.rstrip("?"), email), verifier


def _enter_code(client, code: str):
    page = client.get("/login/second-factor")
    return client.post("/login/second-factor", data={"csrf_token": csrf_token(page.get_data(as_text=True)), "code": code})


def test_global_policy_enrols_right_after_the_password_and_keeps_the_last_factor(app, client, oidc, rp, user):
    app.config["MFA_POLICY"] = "required"
    assert client.get("/.well-known/openid-configuration").get_json()["acr_values_supported"] == list(policy.ACR_VALUES)
    answer, verifier = _password_step(oidc, rp, user.email)
    assert answer.status_code == 302 and answer.location == "/login/enrol"
    assert client.get("/account").status_code == 302  # not signed in before the factor exists
    page = client.get("/login/enrol")
    assert "Set up an authenticator app" in page.get_data(as_text=True)
    setup = client.post("/login/enrol/setup", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    html = setup.get_data(as_text=True)
    key = shown_key(html)
    done = client.post("/login/enrol/confirm", data={"csrf_token": csrf_token(html), "code": code_at(key)})
    assert done.status_code == 200 and len(recovery_codes(done.get_data(as_text=True))) == 10
    onward = re.search(r'<a href="([^"]+)">Continue</a>', done.get_data(as_text=True)).group(1).replace("&amp;", "&")
    claims = claims_of(_tokens(oidc, rp, client.get(onward), verifier)["id_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == "2"

    # Removing the last factor while the policy requires one is refused; nothing is removed.
    page = client.get("/account/security")
    refused = client.post("/account/totp/remove", data={"csrf_token": csrf_token(page.get_data(as_text=True)), "password": "correct horse battery"})
    assert refused.status_code == 400 and "A second factor is required" in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.query(TotpFactor).count() == 1


def test_user_and_client_requirements_and_acr_values_step_up(app, client, oidc, rp, register, make_user):
    # Per user: an admin's requirement sends the user to enrolment after the password.
    required = make_user(email="req@example.com")
    with app.app_context():
        policy.set_user_requirement(required.id, True, actor="user:admin")
        db.session.commit()
    answer, _ = _password_step(oidc, rp, required.email)
    assert answer.location == "/login/enrol"
    client.delete_cookie("idp_session")

    # A password-only session: plain requests reuse it (acr "0"); acr_values=2 asks for more.
    user = make_user(email="step@example.com")
    _sign_in_to_account(client, user.email)
    reused = oidc.sign_in_and_authorize(rp, user.email)
    claims = claims_of(oidc.redeem(rp, reused).get_json()["id_token"])
    assert claims["acr"] == "0" and claims["amr"] == ["pwd"]
    none = oidc.follow(oidc.authorize(rp, acr_values="2", prompt="none")[0])
    assert query_of(none.location)["error"] == "login_required"

    # The user adds an app; acr_values=2 now needs the password and a code (step-up), and gets acr 2.
    page = client.get("/account/security")
    setup = client.post("/account/totp/setup", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    key = shown_key(setup.get_data(as_text=True))
    client.post("/account/totp/confirm", data={"csrf_token": csrf_token(setup.get_data(as_text=True)), "code": code_at(key)})
    answer, verifier = _password_step(oidc, rp, user.email, acr_values="2 3")
    assert answer.location == "/login/second-factor"
    claims = claims_of(_tokens(oidc, rp, _enter_code(client, code_at(key, 1)), verifier)["id_token"])
    assert claims["acr"] == "2" and claims["amr"] == ["pwd", "otp", "mfa"]

    # Per client: a client that requires two factors steps a password-only session up too.
    strict = register(name="Strict RP")
    with app.app_context():
        policy.set_client_requirement(strict.row.id, strict.client_id, True, actor="user:admin")
        db.session.commit()
    client.delete_cookie("idp_session")
    plain = make_user(email="plain@example.com")
    _sign_in_to_account(client, plain.email)
    answer, _ = _password_step(oidc, strict, plain.email)
    assert answer.location == "/login/enrol"
