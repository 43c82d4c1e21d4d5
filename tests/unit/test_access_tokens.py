"""RFC 9068 access tokens: what is issued, and every way a forged or stale one is refused."""

import base64
import json
from datetime import timedelta

import pytest
from jwcrypto import jwk, jwt

from idp.clock import utcnow
from idp.db import db
from idp.keyring.service import signing_key
from idp.models import User
from idp.tokens.access import InvalidTokenError, issue_access_token, revoke_access_token, verify_access_token
from idp.users.service import bump_token_version


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def user(make_user):
    return make_user()


def issue(user, **kwargs):
    kwargs.setdefault("client_id", "rp-1")
    kwargs.setdefault("scope", "openid profile")
    return issue_access_token(subject=user.subject, token_version=user.token_version, **kwargs)


def test_issued_token_has_rfc9068_header_and_minimal_claims(app_ctx, user):
    issued = issue(user, sid="session-1")
    header = json.loads(base64.urlsafe_b64decode(issued.token.split(".")[0] + "=="))
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256" and header["kid"] == signing_key("RS256")[0]
    claims = verify_access_token(issued.token)
    assert set(claims) == {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "sid", "ver"}
    assert claims["iss"] == claims["aud"] == "http://localhost"
    assert claims["exp"] - claims["iat"] == 300 and claims["jti"] == issued.jti
    assert len(issued.token) < 1000


def test_es256_tokens_verify_too(app_ctx, user):
    assert verify_access_token(issue(user, alg="ES256").token)["sub"] == user.subject


def test_expired_and_future_tokens_are_refused(app_ctx, user):
    old = issue(user, now=utcnow() - timedelta(minutes=10)).token
    with pytest.raises(InvalidTokenError, match="expired"):
        verify_access_token(old)
    future = issue(user, now=utcnow() + timedelta(minutes=10)).token
    with pytest.raises(InvalidTokenError, match="future"):
        verify_access_token(future)


def test_nbf_is_checked_with_the_clock_skew(app_ctx, user):
    now, skew = int(utcnow().timestamp()), app_ctx.config["CLOCK_SKEW"]
    header = {"typ": "at+jwt", "alg": "RS256", "kid": signing_key("RS256")[0]}
    assert verify_access_token(forge(header, {**good_claims(user), "nbf": now + skew - 5}))["sub"] == user.subject
    for nbf in (now + skew + 30, "soon"):
        with pytest.raises(InvalidTokenError, match="not yet valid"):
            verify_access_token(forge(header, {**good_claims(user), "nbf": nbf}))


def forge(header: dict, claims: dict, key=None) -> str:
    token = jwt.JWT(header=header, claims=claims)
    token.make_signed_token(key or signing_key("RS256")[1])
    return token.serialize()


def good_claims(user) -> dict:
    now = int(utcnow().timestamp())
    return {"iss": "http://localhost", "aud": "http://localhost", "sub": user.subject, "exp": now + 60, "iat": now, "jti": "j", "client_id": "c", "scope": "openid", "ver": 1}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"typ": "JWT"}, "not an access token"),
        ({"jku": "http://127.0.0.1:1/jwks"}, "unacceptable header"),
        ({"x5u": "http://127.0.0.1:1/cert"}, "unacceptable header"),
        ({"kid": "unknown"}, "unknown key"),
    ],
)
def test_hostile_headers_are_refused_without_fetching(app_ctx, user, change, reason):
    kid = signing_key("RS256")[0]
    with pytest.raises(InvalidTokenError, match=reason):
        verify_access_token(forge({"alg": "RS256", "typ": "at+jwt", "kid": kid, **change}, good_claims(user)))


def test_embedded_jwk_header_is_refused(app_ctx, user):
    attacker = jwk.JWK.generate(kty="RSA", size=2048)
    header = {"alg": "RS256", "typ": "at+jwt", "kid": signing_key("RS256")[0], "jwk": json.loads(attacker.export_public())}
    with pytest.raises(InvalidTokenError, match="unacceptable header"):
        verify_access_token(forge(header, good_claims(user), attacker))


def test_alg_none_and_hmac_with_public_key_are_refused(app_ctx, user):
    kid = signing_key("RS256")[0]
    unsigned = f"{b64({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{b64(good_claims(user))}."
    with pytest.raises(InvalidTokenError, match="algorithm"):
        verify_access_token(unsigned)
    public_pem = signing_key("RS256")[1].export_to_pem()
    hmac_key = jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(public_pem).rstrip(b"=").decode())
    with pytest.raises(InvalidTokenError, match="algorithm"):
        verify_access_token(forge({"alg": "HS256", "typ": "at+jwt", "kid": kid}, good_claims(user), hmac_key))


def test_signature_by_a_foreign_key_with_our_kid_is_refused(app_ctx, user):
    attacker = jwk.JWK.generate(kty="RSA", size=2048)
    with pytest.raises(InvalidTokenError, match="bad signature"):
        verify_access_token(forge({"alg": "RS256", "typ": "at+jwt", "kid": signing_key("RS256")[0]}, good_claims(user), attacker))


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 10000, "....", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"])
def test_garbage_is_refused(app_ctx, token):
    with pytest.raises(InvalidTokenError):
        verify_access_token(token)


def test_wrong_issuer_or_audience_is_refused(app_ctx, user):
    kid = signing_key("RS256")[0]
    for change in ({"iss": "https://other.example.com"}, {"aud": "https://api.example.com"}):
        with pytest.raises(InvalidTokenError, match="wrong"):
            verify_access_token(forge({"alg": "RS256", "typ": "at+jwt", "kid": kid}, {**good_claims(user), **change}))


def test_denylisted_jti_and_bumped_version_are_refused(app_ctx, user):
    issued = issue(user)
    revoke_access_token(issued.jti, issued.expires_at)
    db.session.commit()
    with pytest.raises(InvalidTokenError, match="revoked"):
        verify_access_token(issued.token)
    assert verify_access_token(issued.token, check_state=False)["jti"] == issued.jti
    second = issue(user)
    bump_token_version(db.session.get(User, user.id), reason="test", actor="test")
    db.session.commit()
    with pytest.raises(InvalidTokenError, match="outdated"):
        verify_access_token(second.token)
