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
def server(shared_server) -> str:
    return shared_server()


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


def test_whole_life_of_a_sign_in_userinfo_revocation_and_logout(server, discovery, make_user, make_client):
    """The relying party's whole journey: sign in, refresh, userinfo, revoke, RP-initiated logout."""
    user = make_user(email="journey@example.com", name="Journey")
    bye = "http://127.0.0.1:8765/signed-out"
    client, secret = make_client(name="Journey RP", redirect_uris=[REDIRECT_URI], post_logout_redirect_uris=[bye])
    signed_in = sign_in(server, client_id=client.client_id, client_secret=secret, redirect_uri=REDIRECT_URI, email=user.email, password=PASSWORD)
    renewed = refresh(server, signed_in, client_id=client.client_id, client_secret=secret)

    # Userinfo through the RP library's own session, which sends the bearer token.
    info = signed_in.rp.get(discovery["userinfo_endpoint"], timeout=30)
    assert info.status_code == 200 and info.json()["sub"] == user.subject and info.json()["email"] == user.email

    # Revoking the refresh token (RFC 7009) kills its family: the RP can no longer refresh.
    revoked = requests.post(discovery["revocation_endpoint"], data={"token": renewed["refresh_token"], "token_type_hint": "refresh_token"}, auth=(client.client_id, secret), timeout=30)
    assert revoked.status_code == 200
    again = requests.post(discovery["token_endpoint"], data={"grant_type": "refresh_token", "refresh_token": renewed["refresh_token"]}, auth=(client.client_id, secret), timeout=30)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    # RP-initiated logout with the ID token as hint: back to the registered URI with the state.
    browser = signed_in.browser
    logout = browser.get(discovery["end_session_endpoint"], params={"id_token_hint": renewed["id_token"], "post_logout_redirect_uri": bye, "state": "bye-1"}, allow_redirects=False, timeout=30)
    assert logout.status_code in (302, 303) and logout.headers["Location"] == f"{bye}?state=bye-1"
    # The SSO session is gone: the account page now sends the browser to sign in.
    assert browser.get(server + "/account", allow_redirects=False, timeout=30).status_code == 302
