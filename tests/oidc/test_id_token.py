"""ID tokens: claims (OIDC Core 2), signatures by the keyring, RS256 or the client's ES256."""

import base64
import hashlib
import json

import pytest
from jwcrypto import jwk, jwt
from sqlalchemy import select

from idp.db import db
from idp.models import UserSession
from idp.tokens.hints import verify_id_token_hint
from idp.tokens.access import InvalidTokenError, verify_access_token
from tests.oidc.conftest import basic, claims_of, header_of


def verified_claims(client, token: str, alg: str) -> dict:
    """Verify `token` with the published JWKS, as a relying party would, and return its claims."""
    keys = jwk.JWKSet.from_json(client.get("/.well-known/jwks.json").data)
    verified = jwt.JWT(jwt=token, key=keys, algs=[alg], check_claims={"exp": None, "iat": None})
    return json.loads(verified.claims)


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def test_claims_of_a_code_flow_id_token(oidc, rp, user, client, app):
    tokens = oidc.tokens_for(rp, user.email, scope="openid profile email")
    header = header_of(tokens["id_token"])
    assert header["alg"] == "RS256" and header["typ"] == "JWT" and header["kid"]
    claims = verified_claims(client, tokens["id_token"], "RS256")
    assert claims["iss"] == "http://localhost"
    assert claims["sub"] == user.subject and claims["aud"] == rp.client_id
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["nonce"] == "nonce-456"
    assert claims["at_hash"] == at_hash(tokens["access_token"])
    assert claims["acr"] == "1" and claims["amr"] == ["pwd"]
    with app.app_context():
        row = db.session.scalar(select(UserSession))
        assert claims["sid"] == row.sid and claims["auth_time"] == int(row.auth_time.timestamp())


def test_a_standard_id_token_carries_the_granted_profile_and_email_claims(oidc, rp, user, client, app):
    # OIDC Core 2 lets an ID token carry more claims; by default it carries those of the granted
    # profile and email scopes (Core 5.4), where relying-party libraries read them.
    tokens = oidc.tokens_for(rp, user.email, scope="openid profile email")
    claims = verified_claims(client, tokens["id_token"], "RS256")
    assert claims["name"] == "Alice Liddell" and claims["preferred_username"] == user.email
    assert claims["email"] == user.email and claims["email_verified"] is False
    assert isinstance(claims["updated_at"], int) and claims["sub"] == user.subject
    # The access token stays minimal (RFC 9068 2.2): no profile or email claims.
    assert not {"name", "email", "email_verified", "preferred_username"} & set(claims_of(tokens["access_token"]))


def test_an_id_token_carries_only_the_scopes_granted(oidc, rp, user):
    claims = claims_of(oidc.tokens_for(rp, user.email, scope="openid email")["id_token"])
    assert claims["email"] == user.email and not {"name", "preferred_username", "updated_at"} & set(claims)
    claims = claims_of(oidc.tokens_for(rp, user.email, scope="openid")["id_token"])
    assert not {"name", "email", "email_verified", "preferred_username", "updated_at"} & set(claims)


def test_a_refreshed_id_token_carries_the_same_claims(oidc, rp, user):
    tokens = oidc.tokens_for(rp, user.email, scope="openid profile email offline_access")
    refreshed = oidc.client.post("/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                                 headers={"Authorization": basic(rp.client_id, rp.secret)})
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    claims = claims_of(refreshed.get_json()["id_token"])
    assert claims["name"] == "Alice Liddell" and claims["email"] == user.email


def test_a_minimal_client_gets_no_scope_claims_in_its_id_token(oidc, register, user, client):
    minimal = register(name="Minimal RP", id_token_claims="minimal")
    tokens = oidc.tokens_for(minimal, user.email, scope="openid profile email")
    claims = verified_claims(client, tokens["id_token"], "RS256")
    assert claims["sub"] == user.subject and claims["aud"] == minimal.client_id
    # OIDC Core 5.4: an access token was issued, so scope claims come from userinfo, not here.
    assert not {"name", "email", "email_verified"} & set(claims)
    assert not {"preferred_username", "updated_at"} & set(claims)
    userinfo = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).get_json()
    assert userinfo["name"] == "Alice Liddell" and userinfo["email"] == user.email


def test_a_session_sign_in_is_acr_0(oidc, rp, register, user):
    oidc.tokens_for(rp, user.email)
    other = register(name="Second", skip_consent=True)
    claims = claims_of(oidc.tokens_for(other, user.email)["id_token"])
    assert claims["acr"] == "0" and claims["amr"] == ["pwd"]


def test_a_client_registered_for_es256_gets_es256(oidc, register, user, client):
    es = register(id_token_signed_response_alg="ES256")
    tokens = oidc.tokens_for(es, user.email)
    assert header_of(tokens["id_token"])["alg"] == "ES256"
    claims = verified_claims(client, tokens["id_token"], "ES256")
    assert claims["at_hash"] == at_hash(tokens["access_token"])
    with pytest.raises(Exception):
        verified_claims(client, tokens["id_token"], "RS256")


def test_no_openid_scope_no_id_token(oidc, rp, user):
    assert "id_token" not in oidc.tokens_for(rp, user.email, scope="profile email")


def test_an_id_token_is_never_an_access_token_and_vice_versa(oidc, rp, user, app):
    tokens = oidc.tokens_for(rp, user.email)
    with app.test_request_context():
        with pytest.raises(InvalidTokenError):
            verify_access_token(tokens["id_token"])
        with pytest.raises(InvalidTokenError):
            verify_id_token_hint(tokens["access_token"])
        assert verify_id_token_hint(tokens["id_token"], client_id=rp.client_id)["sub"] == user.subject
        with pytest.raises(InvalidTokenError):
            verify_id_token_hint(tokens["id_token"], client_id="someone-else")
