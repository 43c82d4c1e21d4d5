"""State changes only by POST: every route of the URL map, by GET, HEAD and a POST without a CSRF token.

`ACTING` lists every endpoint that accepts a state-changing method, with the form that makes it
act; the test fails when the URL map has one it does not list (or lists one that is gone). GET and
HEAD of every rule, and a POST of every acting endpoint without a valid CSRF token, leave every
table's rows as they were; the same POSTs with the token do change them, so the refusals are real.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from idp.db import db
from idp.mfa import totp
from idp.models import Base, KeyState, Passkey, SigningKey, TotpFactor, User
from idp.routing import STATE_CHANGING_METHODS
from tests.admin_ui.conftest import PASSWORD, make_grant, make_session
from tests.mfa.authenticator import SoftAuthenticator
from tests.mfa.conftest import code_at
from tests.oidc.flow import csrf_token, pkce_pair

NEW_PASSWORD = "a-brand-new-password"
CLIENT_FORM = {"name": "Renamed", "client_type": "confidential", "redirect_uris": "https://rp.example.com/cb",
               "grant_types": "authorization_code", "scopes": "openid", "token_endpoint_auth_method": "client_secret_basic",
               "id_token_signed_response_alg": "RS256"}

# endpoint -> (URL template, form data, who: admin | user | protocol). Cookie-authenticated forms
# ("admin", "user", "visitor": a browser not signed in) must refuse a POST without a valid CSRF token; protocol endpoints authenticate
# with client credentials or tokens, never a cookie, and are posted without them. The order is the
# order of the positive sweep (the last ones end what the earlier ones need).
ACTING = {
    "admin.login": ("/admin/login", {"email": "admin@example.com", "password": PASSWORD}, "admin"),
    "admin.reauth": ("/admin/reauth", {"password": PASSWORD}, "admin"),
    "admin.sessions_revoke": ("/admin/sessions/revoke", {"only": "{target_sid}"}, "admin"),
    "admin.user_new": ("/admin/users/new", {"email": "new@example.com", "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}, "admin"),
    "admin.user_edit": ("/admin/users/{target}/edit", {"email": "renamed@example.com", "name": "Renamed"}, "admin"),
    "admin.user_password": ("/admin/users/{target}/password", {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}, "admin"),
    "admin.user_revoke_grant": ("/admin/users/{target}/grants/{client_id}/revoke", {}, "admin"),
    "admin.user_disable": ("/admin/users/{target}/disable", {}, "admin"),
    "admin.user_enable": ("/admin/users/{target}/enable", {}, "admin"),
    "admin.user_grant_admin": ("/admin/users/{target}/grant-admin", {}, "admin"),
    "admin.user_revoke_admin": ("/admin/users/{other_admin}/revoke-admin", {}, "admin"),
    "admin.user_sign_out": ("/admin/users/{target}/sign-out", {}, "admin"),
    "admin.user_mfa_reset": ("/admin/users/{target}/mfa/reset", {}, "admin"),
    "admin.user_mfa_require": ("/admin/users/{mfa_user}/mfa/require", {}, "admin"),
    "admin.user_delete": ("/admin/users/{target}/delete", {}, "admin"),
    "admin.client_new": ("/admin/clients/new", {**CLIENT_FORM, "name": "Evil"}, "admin"),
    "admin.client_edit": ("/admin/clients/{client_id}/edit", CLIENT_FORM, "admin"),
    "admin.client_rotate_secret": ("/admin/clients/{client_id}/rotate-secret", {}, "admin"),
    "admin.key_revoke": ("/admin/keys/{kid}/revoke", {}, "admin"),
    "admin.keys_rotate": ("/admin/keys/rotate", {"alg": "ES256", "force": "y"}, "admin"),
    "admin.job_run": ("/admin/jobs/purge/run", {}, "admin"),
    "admin.throttle_clear": ("/admin/throttles/clear", {"key": "ip:127.0.0.1"}, "admin"),
    # Mail: recovery, verification, invitation, sign-up, email change (links opened by the callables first).
    "onboarding.forgot_password": ("/password/forgot", {"email": "target@example.com"}, "visitor"),
    "onboarding.reset_password": ("/password/reset", lambda c, n: _open_link(c, n, "reset") and {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, "visitor"),
    "onboarding.confirm_email": ("/email/verify", lambda c, n: _open_link(c, n, "verify") and {}, "visitor"),
    "onboarding.accept_invitation": ("/invitation", lambda c, n: _open_link(c, n, "invite") and {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, "visitor"),
    "onboarding.sign_up": ("/signup", {"email": "signup@example.com", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, "visitor"),
    "onboarding.change_email": ("/account/email", {"email": "changed@example.com", "password": PASSWORD}, "user"),
    "admin.user_invite": ("/admin/users/invite", {"email": "invited@example.com"}, "admin"),
    "admin.user_resend_verification": ("/admin/users/{mfa_user}/resend-verification", {}, "admin"),
    "auth.consent": ("{consent_url}", {"decision": "allow", "rid": "{rid}"}, "user"),
    "account.revoke_application": ("/account/applications/{client_id}/revoke", {}, "user"),
    "admin.client_mfa_require": ("/admin/clients/{client_id}/mfa/require", {}, "admin"),
    "admin.client_delete": ("/admin/clients/{client_id}/delete", {}, "admin"),
    "admin.logout": ("/admin/logout", {}, "admin"),
    "auth.login": ("/login", {"username": "admin@example.com", "password": PASSWORD}, "user"),
    "account.sign_out_session": ("/account/sessions/{own_other_sid}/sign-out", {}, "user"),
    "account.password": ("/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}, "user"),
    "account.sign_out_all": ("/account/sign-out-everywhere", {}, "user"),
    # Second factors of mfa@example.com, whom admin.user_mfa_require made owe one: enrolment right
    # after the password, a passkey so the app can go and come back, then every way to sign in.
    # A callable builds its form just before the POST (signing in first, fetching WebAuthn options).
    "mfa.enrol_setup_at_sign_in": ("/login/enrol/setup", lambda c, n: _password_step(c, n) and {}, "visitor"),
    "mfa.enrol_confirm_at_sign_in": ("/login/enrol/confirm", lambda c, n: {"code": _pending_code(n)}, "visitor"),
    "mfa.passkey_registration_options": ("/account/passkeys/options", {}, "user"),
    "mfa.passkey_add": ("/account/passkeys", lambda c, n: {"credential": _create(c, n), "name": "Laptop"}, "user"),
    "mfa.totp_remove": ("/account/totp/remove", {"password": PASSWORD}, "user"),
    "mfa.totp_setup": ("/account/totp/setup", {}, "user"),
    "mfa.totp_confirm": ("/account/totp/confirm", lambda c, n: {"code": _pending_code(n)}, "user"),
    "mfa.recovery_codes": ("/account/recovery-codes", {"password": PASSWORD}, "user"),
    "mfa.passkey_sign_in_options": ("/login/passkey/options", {}, "visitor"),
    "mfa.passkey_sign_in": ("/login/passkey", lambda c, n: {"credential": _assert(c, n, "/login/passkey/options")}, "visitor"),
    "mfa.second_factor": ("/login/second-factor", lambda c, n: _password_step(c, n) and {"code": _next_code(n)}, "visitor"),
    "mfa.passkey_second_factor_options": ("/login/second-factor/passkey/options", lambda c, n: _password_step(c, n) and {}, "visitor"),
    "mfa.passkey_second_factor": ("/login/second-factor/passkey",
                                  lambda c, n: _password_step(c, n) and {"credential": _assert(c, n, "/login/second-factor/passkey/options")}, "visitor"),
    "mfa.passkey_remove": ("/account/passkeys/{passkey_id}/remove", lambda c, n: _passkey_id(n) and {"password": PASSWORD}, "user"),
    "oauth.token": ("/token", {"grant_type": "client_credentials", "client_id": "{client_id}"}, "protocol"),
    "token_endpoints.revoke": ("/revoke", {"token": "x", "client_id": "{client_id}"}, "protocol"),
    "token_endpoints.introspect": ("/introspect", {"token": "x", "client_id": "{client_id}"}, "protocol"),
    "oauth.authorize": ("/authorize", {"client_id": "unknown"}, "protocol"),
    "logout.end_session": ("/logout", {"confirm": "Sign out"}, "protocol"),
    "userinfo.userinfo": ("/userinfo", {}, "protocol"),
}
# What these do happens outside the database (a task on the broker), so the positive sweep skips them.
ACTS_OUTSIDE_THE_DATABASE = {"admin.job_run"}
# The session's last_seen_at is bookkeeping written at most once a minute, not a state change.
BOOKKEEPING = {("sessions", "last_seen_at")}
URL_ARGUMENTS = {"user_id": "{target}", "client_id": "{client_id}", "kid": "{kid}", "sid": "{target_sid}", "name": "purge",
                 "filename": "admin.css", "passkey_id": "{passkey_id}"}
MFA_EMAIL = "mfa@example.com"


def _password_step(client, names: dict) -> bool:
    """Enter the MFA user's password: the session now waits for their second factor (or enrolment)."""
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"username": MFA_EMAIL, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302 and response.location.startswith(("/login/second-factor", "/login/enrol")), response.location
    return True


LINK_PATHS = {"reset": "/password/reset", "verify": "/email/verify", "invite": "/invitation"}


def _open_link(client, names: dict, kind: str) -> bool:
    """Open a mailed link of `kind` in this browser (its token minted here, as the mail worker does)."""
    from idp.onboarding.service import invite, issue_link
    from idp.security import digest

    with names["app"].app_context():
        if kind == "invite":
            user = invite(f"invitee-{len(names)}@example.com", actor="test")
        else:
            user = db.session.get(User, names["onboard"])
        link = issue_link(user, kind, user.email)
        link.digest = digest(token := f"idp_ml_test_{kind}")
        db.session.commit()
    response = client.get(f"{LINK_PATHS[kind]}?token={token}")
    assert response.status_code == 303, response.get_data(as_text=True)
    return True


def _pending_code(names: dict) -> str:
    """The code an app shows for the MFA user's authenticator key still being set up."""
    with names["app"].app_context():
        return code_at(totp.secret_of(totp.pending_factor(names["mfa_user"])))


def _next_code(names: dict) -> str:
    """The next step's code of the MFA user's app (the current one was spent confirming it)."""
    with names["app"].app_context():
        factor = db.session.scalar(select(TotpFactor).where(TotpFactor.user_id == names["mfa_user"], TotpFactor.confirmed_at.is_not(None)))
        return code_at(totp.secret_of(factor), steps_ahead=1)


def _options(client, path: str) -> dict:
    response = client.post(path, headers={"X-CSRFToken": csrf_token(client.get("/login").get_data(as_text=True))})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _create(client, names: dict) -> str:
    return names["authenticator"].create(_options(client, "/account/passkeys/options"), origin=names["origin"])


def _assert(client, names: dict, options_path: str) -> str:
    return names["authenticator"].get(_options(client, options_path), origin=names["origin"])


def _passkey_id(names: dict) -> bool:
    with names["app"].app_context():
        names["passkey_id"] = db.session.scalar(select(Passkey.id).where(Passkey.user_id == names["mfa_user"]))
    return True


def snapshot(app) -> dict:
    """Every row of every table (minus bookkeeping columns), to prove a request changed nothing."""
    with app.app_context():
        tables = {}
        for table in Base.metadata.sorted_tables:
            columns = [column for column in table.columns if (table.name, column.name) not in BOOKKEEPING]
            tables[table.name] = sorted(repr(tuple(row)) for row in db.session.execute(select(*columns)))
        db.session.remove()
        return tables


def changed_tables(before: dict, after: dict) -> list[str]:
    return [name for name in before if before[name] != after[name]]


def rule_url(rule, names: dict) -> str:
    """A concrete URL for a URL-map rule, its arguments taken from the scenario."""
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda match: URL_ARGUMENTS[match.group(1)], rule.rule).format(**names)


@pytest.fixture
def config(config):
    """Sign-up open, so its form acts too."""
    return {**config, "SIGNUP": "open"}


@pytest.fixture
def scenario(app, client, make_user, make_client):
    """A test client signed in to the admin UI and as an end user, and something for every action to aim at."""
    admin = make_user(email="admin@example.com", password=PASSWORD, is_admin=True)
    target = make_user(email="target@example.com", is_admin=False)
    other_admin = make_user(email="other-admin@example.com", is_admin=True)
    mfa_user = make_user(email=MFA_EMAIL, password=PASSWORD)
    onboard = make_user(email="onboard@example.com")  # the reset and verification links' account
    with app.app_context():
        totp.begin_enrolment(db.session.get(User, target.id))  # a factor for the admin's reset to remove
        db.session.commit()
    registered, _ = make_client(redirect_uris=["https://rp.example.com/cb"], scope="openid email")
    _, target_sid = make_session(app, target.id)
    make_grant(app, target.id, registered.id, sid=target_sid)
    make_grant(app, admin.id, registered.id)
    _, own_other_sid = make_session(app, admin.id)
    wrong = {"username": target.email, "password": "not-the-password"}  # a throttle bucket for "Clear" to lift
    assert client.post("/login", data={**wrong, "csrf_token": csrf_token(client.get("/login").get_data(as_text=True))}).status_code == 401
    for url, data in (("/admin/login", {"email": admin.email, "password": PASSWORD}), ("/login", {"username": admin.email, "password": PASSWORD})):
        token = csrf_token(client.get(url).get_data(as_text=True))
        assert client.post(url, data={**data, "csrf_token": token}).status_code in (200, 302, 303)
    _, challenge = pkce_pair()
    consent = client.get("/authorize", query_string={"client_id": registered.client_id, "redirect_uri": "https://rp.example.com/cb",
                                                     "response_type": "code", "scope": "openid email", "code_challenge": challenge,
                                                     "code_challenge_method": "S256", "prompt": "consent"})
    assert consent.status_code == 302 and "/consent?rid=" in consent.headers["Location"]
    with app.app_context():
        kid = db.session.scalar(select(SigningKey.kid).where(SigningKey.state == KeyState.NEXT, SigningKey.alg == "RS256"))
    names = {"target": target.id, "other_admin": other_admin.id, "client_id": registered.client_id, "kid": kid,
             "target_sid": target_sid, "own_other_sid": own_other_sid, "consent_url": consent.headers["Location"],
             "rid": consent.headers["Location"].partition("rid=")[2], "mfa_user": mfa_user.id, "onboard": onboard.id, "passkey_id": 0, "app": app,
             "authenticator": SoftAuthenticator(), "origin": app.config["ISSUER"].rstrip("/")}
    for page in ("/admin/users/new", "/account"):  # rendered once, so neither a flash nor a first CSRF token is pending
        client.get(page)
    return names


TOKEN_PAGES = {"admin": "/admin/users/new", "user": "/account", "visitor": "/login"}


def token_for(client, who: str) -> str:
    return csrf_token(client.get(TOKEN_PAGES[who]).get_data(as_text=True))


def fill(data, names: dict, client=None) -> dict:
    """The form of an ACTING entry; one built by a callable is built only to act (`client` given)."""
    if callable(data):
        return data(client, names) if client is not None else {}
    return {name: value.format(**names) for name, value in data.items()}


def test_only_post_changes_state_and_only_with_the_csrf_token(app, client, scenario):
    acting = {rule.endpoint for rule in app.url_map.iter_rules() if rule.methods & STATE_CHANGING_METHODS}
    assert acting == set(ACTING), "every endpoint taking POST/PUT/PATCH/DELETE must be listed in ACTING"

    before = snapshot(app)
    for rule in app.url_map.iter_rules():
        url = rule_url(rule, scenario)
        for method in ("GET", "HEAD"):
            with client.open(url, method=method) as response:
                assert response.status_code < 500, (method, url)
        assert changed_tables(before, snapshot(app)) == [], url
    for endpoint, (url, data, who) in ACTING.items():
        for token in ({}, {"csrf_token": "forged"}):
            response = client.post(url.format(**scenario), data={**fill(data, scenario), **token})
            assert 300 <= response.status_code < 500, (endpoint, response.status_code)
            if who != "protocol":
                assert response.status_code == 400, endpoint
            if who == "admin":
                assert "CSRF" in response.get_data(as_text=True), endpoint
        assert changed_tables(before, snapshot(app)) == [], endpoint

    # The same forms with the token act: the refusals above were the CSRF check, not bad forms.
    for endpoint, (url, data, who) in ACTING.items():
        if who == "protocol" or endpoint in ACTS_OUTSIDE_THE_DATABASE:
            continue
        form = fill(data, scenario, client)  # before the snapshot: only the POST itself must change rows
        before = snapshot(app)
        response = client.post(url.format(**scenario), data={**form, "csrf_token": token_for(client, who)})
        assert response.status_code in (200, 302, 303), (endpoint, response.status_code)
        assert changed_tables(before, snapshot(app)), endpoint
