"""create_app is the one composition root: every app gets its own authorization server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from jwcrypto import jwt

from idp.oauth.server import EXTENSION, authorization_server

GRANT_TYPES = ["client_credentials"]
ROOT = Path(__file__).resolve().parents[2]


def client_credentials_token(app, registered, secret) -> dict:
    """Claims of an access token issued by `app` for a client_credentials request (unverified read)."""
    response = app.test_client().post(
        "/token", data={"grant_type": "client_credentials"}, auth=(registered.client_id, secret),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(jwt.JWT(jwt=response.get_json()["access_token"]).token.objects["payload"])


def test_two_apps_in_one_process_share_no_server_state(app, make_app, make_client):
    registered, secret = make_client(grant_types=GRANT_TYPES, redirect_uris=[], scope="")
    other = make_app(ISSUER="https://other.example")
    first, second = app.extensions[EXTENSION], other.extensions[EXTENSION]

    assert first is not second
    # Each server holds the grants and endpoints once: nothing was registered twice on either.
    for server in (first, second):
        assert [grant.__name__ for grant, _ in server._authorization_grants] == ["AuthorizationCodeGrant"]
        assert sorted(grant.__name__ for grant, _ in server._token_grants) == ["AuthorizationCodeGrant", "ClientCredentialsGrant", "RefreshTokenGrant"]
        assert sorted(server._endpoints) == ["end_session", "introspection", "revocation", "userinfo"]
        assert all(len(endpoints) == 1 for endpoints in server._endpoints.values())
    assert first._endpoints["userinfo"][0] is not second._endpoints["userinfo"][0]
    # A change to one app's server is invisible to the other.
    first.register_endpoint(type("ExtraEndpoint", (first._endpoints["revocation"][0].__class__,), {"ENDPOINT_NAME": "extra"}))
    assert "extra" in first._endpoints and "extra" not in second._endpoints

    with app.test_request_context():
        assert authorization_server() is first
    with other.test_request_context():
        assert authorization_server() is second

    # Both still serve, each with its own settings (building the second did not rebind the first).
    assert client_credentials_token(app, registered, secret)["iss"] == "http://localhost"
    assert client_credentials_token(other, registered, secret)["iss"] == "https://other.example"


def test_importing_the_package_builds_nothing():
    """Nothing is composed or computed at import time: no server object, no receiver, no dummy hash."""
    probe = (
        "import idp, idp.oauth.server as server, idp.security as security, idp.tasks.outbox as outbox\n"
        "from idp.sessions.store import session_ended\n"
        "from idp.signout import signed_out_everywhere\n"
        "servers = [name for name, value in vars(server).items() if type(value).__name__ == 'AuthorizationServer']\n"
        "print(servers, len(session_ended.receivers), len(signed_out_everywhere.receivers), len(outbox.HANDLERS), security._dummy_hash.cache_info().currsize)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "0", "0", "0", "0"]


def test_settings_from_the_table_reach_the_app(make_app):
    """Discovery max-age, the body limit, the CSRF lifetime and the keyring cache come from settings."""
    configured = make_app(DISCOVERY_MAX_AGE=60, MAX_CONTENT_LENGTH=2048, CSRF_TOKEN_TTL=90, KEYRING_CACHE_SECONDS=2)
    client = configured.test_client()

    discovery = client.get("/.well-known/openid-configuration")
    assert discovery.headers["Cache-Control"] == "public, max-age=60"
    assert client.post("/token", data={"grant_type": "client_credentials", "pad": "x" * 4096}).status_code == 413
    assert configured.config["WTF_CSRF_TIME_LIMIT"] == 90
    assert configured.extensions["idp.keyring_cache"]._seconds == 2
