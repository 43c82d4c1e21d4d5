"""CORS: a single-page application reads discovery, the JWKS, /token, /userinfo and /revoke from
its own origin; other origins read only the public documents; no other endpoint answers them."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from idp.cors import origin_of
from tests.browser_support import server_pool, shared_server  # noqa: F401 (fixtures of the browser test)
from tests.oidc.conftest import basic
from tests.oidc.flow import pkce_pair

SPA = "https://spa.example.com"
DEV_SPA = "http://localhost:3000"
EVIL = "https://evil.example.com"


@pytest.fixture
def spa(register):
    """A public client whose pages are served from SPA and, in development, DEV_SPA."""
    return register(name="SPA", public=True, redirect_uris=[SPA + "/callback", DEV_SPA + "/callback"])


def token_error(client, registered, origin: str | None, **headers):
    """A code redemption that fails (unknown code): its error must be readable by the client's own page."""
    form = {"grant_type": "authorization_code", "code": "unknown", "redirect_uri": registered.redirect_uri, "code_verifier": "v" * 43}
    if not registered.secret:
        form["client_id"] = registered.client_id
    if origin:
        headers["Origin"] = origin
    return client.post("/token", data=form, headers=headers)


def allowed_origin(response) -> str | None:
    return response.headers.get("Access-Control-Allow-Origin")


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/.well-known/jwks.json"])
def test_public_documents_are_readable_from_any_origin_without_credentials(client, path):
    response = client.get(path, headers={"Origin": EVIL})
    assert response.status_code == 200 and allowed_origin(response) == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert allowed_origin(client.get(path)) is None  # no Origin, no CORS: servers see no change


def test_the_token_endpoint_answers_only_the_clients_own_origins(client, spa):
    for origin in (SPA, DEV_SPA):
        response = token_error(client, spa, origin)
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"
        assert allowed_origin(response) == origin and "Origin" in response.headers["Vary"]
        assert "Access-Control-Allow-Credentials" not in response.headers
    for origin in (EVIL, "https://spa.example.com.evil.example", "http://spa.example.com", "https://spa.example.com:8443", "null"):
        response = token_error(client, spa, origin)
        assert allowed_origin(response) is None, origin
        assert "Origin" in response.headers["Vary"]  # a shared cache must not hand SPA's answer to others


def test_a_client_authenticating_with_basic_is_recognised_too(client, register):
    confidential = register(name="BFF", redirect_uris=[SPA + "/callback"])
    response = token_error(client, confidential, SPA, Authorization=basic(confidential.client_id, confidential.secret))
    assert response.get_json()["error"] == "invalid_grant" and allowed_origin(response) == SPA
    unknown = client.post("/token", data={"grant_type": "client_credentials", "client_id": "nobody"}, headers={"Origin": SPA})
    assert unknown.status_code == 401 and allowed_origin(unknown) is None


def test_revocation_follows_the_same_rule(client, spa):
    form = {"token": "unknown", "client_id": spa.client_id}
    assert allowed_origin(client.post("/revoke", data=form, headers={"Origin": SPA})) == SPA
    assert allowed_origin(client.post("/revoke", data=form, headers={"Origin": EVIL})) is None


@pytest.mark.parametrize(("path", "methods"), [("/userinfo", "GET, POST"), ("/token", "POST"), ("/revoke", "POST")])
def test_preflights_let_a_page_send_the_bearer_header(client, path, methods):
    response = client.options(path, headers={"Origin": SPA, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"})
    assert response.status_code == 200
    assert allowed_origin(response) == "*" and response.headers["Access-Control-Allow-Methods"] == methods
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]  # never covered by a wildcard
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_userinfo_errors_are_readable_with_their_challenge(client):
    response = client.get("/userinfo", headers={"Origin": EVIL, "Authorization": "Bearer not-a-token"})
    assert response.status_code == 401 and allowed_origin(response) == "*"
    assert response.headers["Access-Control-Expose-Headers"] == "WWW-Authenticate"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("path", ["/authorize", "/login", "/consent", "/introspect", "/account", "/logout", "/admin/", "/admin/login", "/healthz"])
def test_every_other_endpoint_stays_closed_to_other_origins(client, path):
    for response in (
        client.get(path, headers={"Origin": SPA}),
        client.post(path, headers={"Origin": SPA}),
        client.options(path, headers={"Origin": SPA, "Access-Control-Request-Method": "POST"}),
    ):
        assert not any(name.startswith("Access-Control-") for name in response.headers.keys()), (path, response.status_code)


@pytest.mark.parametrize(("uri", "origin"), [
    ("https://SPA.example.com/callback?x=1#f", "https://spa.example.com"),
    ("https://spa.example.com:443/callback", "https://spa.example.com"),
    ("http://localhost:80/cb", "http://localhost"),
    ("http://localhost:3000/cb", "http://localhost:3000"),
    ("http://[::1]:8080/cb", "http://[::1]:8080"),
    ("com.example.app:/oauth2redirect", None),  # a native app's private-use scheme: no web origin
    ("https://spa.example.com:99999/cb", None),
])
def test_origin_of_a_redirect_uri(uri, origin):
    assert origin_of(uri) == origin


# --- in a real browser ------------------------------------------------------------------------------

CALLBACK_PAGE = """<!doctype html><p id="out"></p><script>
(async () => {
  const config = %s;
  const code = new URLSearchParams(location.search).get("code");
  const body = new URLSearchParams({grant_type: "authorization_code", code, redirect_uri: config.redirect_uri,
                                    client_id: config.client_id, code_verifier: config.verifier});
  const discovery = await (await fetch(config.issuer + "/.well-known/openid-configuration")).json();
  const jwks = await (await fetch(discovery.jwks_uri)).json();
  const tokens = await (await fetch(discovery.token_endpoint, {method: "POST", body})).json();
  const info = await (await fetch(discovery.userinfo_endpoint, {headers: {Authorization: "Bearer " + tokens.access_token}})).json();
  document.getElementById("out").textContent = JSON.stringify({keys: jwks.keys.length, email: info.email, id_token: !!tokens.id_token});
})().catch(error => { document.getElementById("out").textContent = "failed: " + error; });
</script>"""

STEAL = """async ([tokenEndpoint, form]) => {
  try { await fetch(tokenEndpoint, {method: "POST", body: new URLSearchParams(form)}); return "read"; }
  catch (error) { return "blocked: " + error.name; }
}"""


@pytest.mark.browser
@pytest.mark.slow
def test_a_single_page_application_signs_in_with_fetch_from_its_own_origin(app, shared_server, make_client, user, browser_context):
    """The SPA (on `localhost`) redeems its code and calls userinfo on the IdP (on `127.0.0.1`, another
    origin) with fetch(); a page on a third origin cannot read the token endpoint's answer."""
    from idp.db import db
    from idp.models import User
    from idp.sessions.service import new_row
    from tests.oidc.resource_support import RecordingServer

    base = shared_server.base  # its readiness check survives a loaded machine (tests/browser_support.py)
    with RecordingServer() as spa_site, RecordingServer() as other_site:
        spa_origin, other_origin = f"http://localhost:{spa_site.port}", f"http://localhost:{other_site.port}"
        redirect_uri = spa_origin + "/callback"
        registered, _ = make_client("Browser SPA", redirect_uris=[redirect_uri], public=True, skip_consent=True)
        verifier, challenge = pkce_pair()
        spa_site.pages["/callback"] = CALLBACK_PAGE % json.dumps(
            {"issuer": base, "client_id": registered.client_id, "redirect_uri": redirect_uri, "verifier": verifier})
        other_site.pages["/"] = "<!doctype html><p>elsewhere</p>"
        with app.app_context():
            value, _ = new_row(app, "sso", db.session.get(User, user.id))
            db.session.commit()
        browser_context.add_cookies([{"name": "idp_session", "value": value, "url": base, "httpOnly": True, "sameSite": "Lax"}])

        page = browser_context.new_page()
        page.goto(f"{base}/authorize?" + urlencode({
            "response_type": "code", "client_id": registered.client_id, "redirect_uri": redirect_uri, "scope": "openid email",
            "state": "s", "code_challenge": challenge, "code_challenge_method": "S256",
        }))
        page.wait_for_url(redirect_uri + "?*")
        page.wait_for_function("document.getElementById('out').textContent !== ''")
        assert json.loads(page.locator("#out").inner_text()) == {"keys": 4, "email": user.email, "id_token": True}

        page.goto(other_origin + "/")
        form = {"grant_type": "authorization_code", "code": "x", "redirect_uri": redirect_uri, "client_id": registered.client_id, "code_verifier": verifier}
        assert page.evaluate(STEAL, [base + "/token", form]) == "blocked: TypeError"
