"""End to end: a real `idp serve` and an independent relying party (requests-oauthlib) over HTTP.

The RP discovers the endpoints, runs the code flow with PKCE through the real sign-in and
consent pages, verifies the ID token against the published JWKS with joserfc (not the jwcrypto
the server signs with), then refreshes.
"""

import base64
import hashlib

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from tests.oidc.conftest import PASSWORD
from tests.oidc.flow import refresh, sign_in

pytestmark = pytest.mark.slow
REDIRECT_URI = "http://127.0.0.1:8765/callback"


def verify_id_token(discovery: dict, id_token: str, *, client_id: str, nonce: str | None) -> dict:
    """What a relying party checks in an ID token (OIDC Core 3.1.3.7), with its own JOSE library."""
    keys = KeySet.import_key_set(requests.get(discovery["jwks_uri"], timeout=30).json())
    token = jwt.decode(id_token, keys, algorithms=discovery["id_token_signing_alg_values_supported"])
    expected = {"iss": {"essential": True, "value": discovery["issuer"]}, "aud": {"essential": True, "value": client_id}, "sub": {"essential": True}}
    if nonce:
        expected["nonce"] = {"essential": True, "value": nonce}
    JWTClaimsRegistry(**expected).validate(token.claims)
    return token.claims


def at_hash(access_token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(access_token.encode()).digest()[:16]).rstrip(b"=").decode()


@pytest.fixture
def server(start_server) -> str:
    return start_server()


@pytest.fixture
def discovery(server) -> dict:
    document = requests.get(server + "/.well-known/openid-configuration", timeout=30).json()
    assert document["issuer"] == server
    return document


@pytest.mark.parametrize("public", [False, True], ids=["confidential", "public"])
def test_code_flow_with_pkce_and_refresh(server, discovery, make_user, make_client, public):
    user = make_user(email="erin@example.com")
    client, secret = make_client(name="E2E RP", redirect_uris=[REDIRECT_URI], public=public)

    signed_in = sign_in(server, client_id=client.client_id, client_secret=secret, redirect_uri=REDIRECT_URI, email=user.email, password=PASSWORD)
    assert signed_in.callback["iss"] == server  # RFC 9207
    tokens = signed_in.tokens
    assert tokens["token_type"].lower() == "bearer" and tokens["refresh_token"]
    claims = verify_id_token(discovery, tokens["id_token"], client_id=client.client_id, nonce=signed_in.nonce)
    assert claims["sub"] == user.subject and claims["at_hash"] == at_hash(tokens["access_token"])
    first_auth_time = claims["auth_time"]

    renewed = refresh(server, signed_in, client_id=client.client_id, client_secret=secret)
    assert renewed["refresh_token"] != tokens["refresh_token"] and renewed["access_token"] != tokens["access_token"]
    claims = verify_id_token(discovery, renewed["id_token"], client_id=client.client_id, nonce=None)
    assert claims["sub"] == user.subject and claims["auth_time"] == first_auth_time

    # The spent refresh token is refused, as RFC 9700 4.14.2 requires.
    replay = requests.post(
        discovery["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **({"client_id": client.client_id} if public else {})},
        auth=None if public else (client.client_id, secret),
        timeout=30,
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def test_a_second_client_signs_in_from_the_same_browser_without_a_password(server, make_user, make_client):
    user = make_user(email="sso@example.com")
    first, first_secret = make_client(name="First", redirect_uris=[REDIRECT_URI], skip_consent=True)
    second, second_secret = make_client(name="Second", redirect_uris=[REDIRECT_URI], skip_consent=True)
    signed_in = sign_in(server, client_id=first.client_id, client_secret=first_secret, redirect_uri=REDIRECT_URI, email=user.email, password=PASSWORD)
    # A wrong password proves the second sign-in used the SSO session and not the form.
    again = sign_in(server, client_id=second.client_id, client_secret=second_secret, redirect_uri=REDIRECT_URI, email=user.email, password="not the password", browser=signed_in.browser)
    assert again.tokens["access_token"]
