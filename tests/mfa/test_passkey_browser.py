"""Passkeys in a real headless Chromium against a real `idp serve`, with the DevTools virtual authenticator.

The user adds a passkey on the security page, signs out, then signs in with the passkey alone
(no email or password typed) through an authorization-code flow; the ID token's `amr` says so.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
import requests
from playwright.sync_api import expect
from sqlalchemy import select

from idp.db import db
from idp.models import AuditEvent, Passkey
from tests.browser_support import chromium, start_idp_serve  # noqa: F401  (chromium: a fixture, the process's one Chromium)
from tests.oidc.conftest import PASSWORD, claims_of, query_of
from tests.oidc.flow import pkce_pair

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REDIRECT_URI = "http://127.0.0.1:9999/callback"


@pytest.fixture
def chromium_page(chromium):
    """A page of Debian's headless Chromium with a virtual platform authenticator (resident keys, user verification)."""
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    devtools = context.new_cdp_session(page)
    devtools.send("WebAuthn.enable")
    devtools.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True,
    }})
    yield page
    context.close()
    assert problems == [], problems


@pytest.fixture
def localhost_server(app, idp_env, tmp_path):
    """`idp serve` whose issuer is http://localhost:<port>: WebAuthn needs a secure context and a domain as RP id."""
    served = start_idp_serve(idp_env, "idp", tmp_path, host_name="localhost")
    yield served.base
    served.process.stop()


def _authorization_url(base: str, client_id: str, challenge: str) -> str:
    return base + "/authorize?" + urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "scope": "openid",
        "state": "s-1", "nonce": "n-1", "code_challenge": challenge, "code_challenge_method": "S256",
    })


def _sign_out(page, base: str) -> None:
    page.goto(base + "/account")
    page.locator("tr.current button").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def _passkey_flow(page, base: str, client, secret: str, callbacks: list[str], *, click: bool) -> dict:
    """Run an authorization request signed in by the passkey alone; the ID token's claims."""
    verifier, challenge = pkce_pair()
    seen = len(callbacks)
    page.goto(_authorization_url(base, client.client_id, challenge))
    if click:
        expect(page.get_by_role("button", name="Sign in with a passkey")).to_be_visible()
        assert page.input_value("#username") == "" and page.input_value("#password") == ""
        page.get_by_role("button", name="Sign in with a passkey").click()
    for _ in range(150):
        if len(callbacks) > seen:
            break
        page.wait_for_timeout(200)  # lets Playwright deliver events, unlike a sleep
    assert len(callbacks) == seen + 1, "the browser never came back to the client"
    # Nothing listens there: wait until the browser has left the IdP for the callback's error page,
    # or that navigation would interrupt the test's next one.
    for _ in range(150):
        if not page.url.startswith(base):
            break
        page.wait_for_timeout(100)
    assert not page.url.startswith(base), page.url
    query = query_of(callbacks[-1])
    token = requests.post(base.replace("localhost", "127.0.0.1") + "/token", data={
        "grant_type": "authorization_code", "code": query["code"], "redirect_uri": REDIRECT_URI, "code_verifier": verifier,
    }, auth=(client.client_id, secret), timeout=30)
    assert token.status_code == 200, token.text
    return claims_of(token.json()["id_token"])


def test_add_a_passkey_sign_out_and_sign_in_with_it_alone(app, localhost_server, make_user, make_client, chromium_page):
    base, page = localhost_server, chromium_page
    user = make_user(email="pia@example.com")
    client, secret = make_client(name="Passkey RP", redirect_uris=[REDIRECT_URI], skip_consent=True)

    # Pages see no conditional mediation while this origin's localStorage says so.
    page.add_init_script("try { if (localStorage.getItem('no-conditional')) PublicKeyCredential.isConditionalMediationAvailable = async () => false; } catch (e) {}")
    page.goto(base + "/healthz")
    page.evaluate("() => localStorage.setItem('no-conditional', '1')")

    # Sign in with the password and add a passkey on the security page.
    page.goto(base + "/account/security")
    page.fill("#username", user.email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Sign-in security")).to_be_visible()
    # The heading shows before webauthn.js has run; a click on its button before then does nothing.
    page.wait_for_load_state("load")
    page.fill("#passkey-name", "Virtual key")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator(".flash")).to_contain_text("Virtual key")
    expect(page.locator("td.passkey-name")).to_have_text("Virtual key")
    with app.app_context():
        passkey = db.session.scalar(select(Passkey))
        assert passkey.user_id == user.id and passkey.device_type == "single_device" and passkey.last_used_at is None

    _sign_out(page, base)

    # An authorization request; the passkey alone signs in (nothing typed). First with
    # the button, as in a browser without conditional mediation; then with autofill (conditional
    # mediation), which the virtual authenticator answers at once.
    callbacks: list[str] = []
    # Nothing listens at the redirect URI: the browser's request for it is the result.
    page.on("request", lambda request: callbacks.append(request.url) if request.url.startswith(REDIRECT_URI + "?") else None)
    claims = _passkey_flow(page, base, client, secret, callbacks, click=True)
    assert claims["amr"] == ["hwk", "user"] and claims["acr"] == "3" and claims["sub"] == user.subject
    _sign_out(page, base)
    page.evaluate("() => localStorage.removeItem('no-conditional')")
    assert _passkey_flow(page, base, client, secret, callbacks, click=False)["amr"] == ["hwk", "user"]
    with app.app_context():
        used = db.session.get(Passkey, passkey.id)
        assert used.last_used_at is not None
        actions = set(db.session.scalars(select(AuditEvent.action)))
        assert {"mfa.passkey_added", "mfa.signed_in"} <= actions and "mfa.passkey_refused" not in actions
