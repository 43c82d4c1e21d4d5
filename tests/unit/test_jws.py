"""idp.keyring.jws against jwcrypto: what we sign jwcrypto verifies, what jwcrypto signs we verify,
and every tampering of a good token is refused."""

import base64
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from jwcrypto import jwk, jwt

from idp.clock import utcnow
from idp.keyring import jws
from idp.keyring.service import jwks, signing_key


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes) -> dict:
    now = int(utcnow().timestamp())
    return {"iss": "http://localhost", "aud": "rp", "sub": "someone", "iat": now, "exp": now + 60, **changes}


def jwcrypto_token(alg: str, typ: str = "JWT", key=None, kid: str | None = None, **changes) -> str:
    if key is None or kid is None:
        own_kid, own_key = signing_key(alg)
        key, kid = key or own_key, kid or own_kid
    token = jwt.JWT(header={"alg": alg, "kid": kid, "typ": typ}, claims=claims(**changes))
    token.make_signed_token(key)
    return token.serialize()


def published_keyset() -> jwk.JWKSet:
    return jwk.JWKSet.from_json(jwks().body)


@pytest.mark.parametrize("alg", jws.ALGORITHMS)
def test_what_we_sign_verifies_with_jwcrypto_and_the_published_jwks(app_ctx, alg):
    signed = claims()
    token = jws.sign(signed, jws.ID_TOKEN_TYP, alg)
    parsed = jwt.JWT(jwt=token, key=published_keyset(), algs=[alg], check_claims=False)
    assert json.loads(parsed.claims) == signed
    header = json.loads(parsed.token.objects["protected"])
    assert header == {"alg": alg, "kid": signing_key(alg)[0], "typ": "JWT"}


@pytest.mark.parametrize("alg", jws.ALGORITHMS)
def test_what_jwcrypto_signs_we_verify(app_ctx, alg):
    verified = jws.verify(jwcrypto_token(alg), jws.ID_TOKEN_TYP, audience="rp")
    assert verified == {**claims(), "iat": verified["iat"], "exp": verified["iat"] + 60}


def test_typ_is_compared_as_a_media_type(app_ctx):
    for typ in ("at+jwt", "AT+JWT", "application/at+jwt"):
        assert jws.verify(jwcrypto_token("RS256", typ), jws.ACCESS_TOKEN_TYP)["sub"] == "someone"
    for typ in ("JWT", "logout+jwt", "at+jwt2", "application/jwt"):
        with pytest.raises(jws.InvalidTokenError, match="not an access token"):
            jws.verify(jwcrypto_token("RS256", typ), jws.ACCESS_TOKEN_TYP)
    with pytest.raises(jws.InvalidTokenError, match="not an ID token"):
        jws.verify(jws.sign(claims(), jws.ACCESS_TOKEN_TYP), jws.ID_TOKEN_TYP)


@pytest.mark.parametrize("alg", jws.ALGORITHMS)
def test_a_changed_signature_or_payload_is_refused(app_ctx, alg):
    header, payload, signature = jws.sign(claims(), jws.ID_TOKEN_TYP, alg).split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[5] ^= 1
    forged_payload = b64(json.dumps(claims(sub="admin")).encode())
    for token in (f"{header}.{payload}.{b64(bytes(raw))}", f"{header}.{forged_payload}.{signature}",
                  f"{header}.{payload}.{signature[:-4]}", f"{header}.{payload}.", f"{header}.{payload}.{signature}!"):
        with pytest.raises(jws.InvalidTokenError, match="bad signature"):
            jws.verify(token, jws.ID_TOKEN_TYP)


def test_alg_none_and_hmac_keyed_with_the_public_key_are_refused(app_ctx):
    kid, key = signing_key("RS256")
    unsigned = f"{b64(json.dumps({'alg': 'none', 'kid': kid, 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims()).encode())}."
    with pytest.raises(jws.InvalidTokenError, match="algorithm"):
        jws.verify(unsigned, jws.ID_TOKEN_TYP)
    public_pem = key.export_to_pem()
    hmac_key = jwk.JWK(kty="oct", k=b64(public_pem))
    with pytest.raises(jws.InvalidTokenError, match="algorithm"):
        jws.verify(jwcrypto_token("HS256", key=hmac_key, kid=kid), jws.ID_TOKEN_TYP)


def test_a_kid_swapped_to_another_key_is_refused(app_ctx):
    rs_kid, es_kid = signing_key("RS256")[0], signing_key("ES256")[0]
    # Signed by our ES256 key but naming our RS256 key (and the other way round).
    with pytest.raises(jws.InvalidTokenError, match="algorithm"):
        jws.verify(jwcrypto_token("ES256", kid=rs_kid), jws.ID_TOKEN_TYP)
    with pytest.raises(jws.InvalidTokenError, match="algorithm"):
        jws.verify(jwcrypto_token("RS256", kid=es_kid), jws.ID_TOKEN_TYP)
    # The header's kid and alg rewritten after signing: the signature no longer covers it.
    token = jws.sign(claims(), jws.ID_TOKEN_TYP, "ES256")
    header = b64(json.dumps({"alg": "RS256", "kid": rs_kid, "typ": "JWT"}).encode())
    with pytest.raises(jws.InvalidTokenError, match="bad signature"):
        jws.verify(header + token[token.index("."):], jws.ID_TOKEN_TYP)
    attacker = jwk.JWK.generate(kty="EC", crv="P-256")
    with pytest.raises(jws.InvalidTokenError, match="bad signature"):
        jws.verify(jwcrypto_token("ES256", key=attacker), jws.ID_TOKEN_TYP)
    with pytest.raises(jws.InvalidTokenError, match="unknown key"):
        jws.verify(jwcrypto_token("ES256", key=attacker, kid=attacker.thumbprint()), jws.ID_TOKEN_TYP)


def test_a_typ_swapped_after_signing_is_refused(app_ctx):
    token = jws.sign(claims(), jws.ID_TOKEN_TYP)
    kid = signing_key("RS256")[0]
    header = b64(json.dumps({"alg": "RS256", "kid": kid, "typ": "at+jwt"}).encode())
    with pytest.raises(jws.InvalidTokenError, match="bad signature"):
        jws.verify(header + token[token.index("."):], jws.ACCESS_TOKEN_TYP)


@pytest.mark.parametrize("header", [{"jku": "http://127.0.0.1:1/"}, {"x5u": "http://127.0.0.1:1/"}, {"crit": ["exp"]}, {"x5c": []}])
def test_headers_naming_other_keys_are_refused(app_ctx, header):
    kid, key = signing_key("RS256")
    encoded_header = b64(json.dumps({"alg": "RS256", "kid": kid, "typ": "JWT", **header}).encode())
    signing_input = f"{encoded_header}.{b64(json.dumps(claims()).encode())}"
    # A genuine signature by our key: the header alone must be what refuses it.
    signature = key.get_op_key("sign").sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(jws.InvalidTokenError, match="unacceptable header"):
        jws.verify(f"{signing_input}.{b64(signature)}", jws.ID_TOKEN_TYP)


def test_time_claims_with_the_clock_skew(app_ctx):
    skew = app_ctx.config["CLOCK_SKEW"]
    now = int(utcnow().timestamp())
    assert jws.verify(jwcrypto_token("ES256", exp=now - skew + 5), jws.ID_TOKEN_TYP)
    for changes, reason in (({"exp": now - skew - 1}, "expired"), ({"exp": None}, "missing exp"), ({"exp": True}, "missing exp"),
                            ({"iat": now + skew + 30}, "future"), ({"iat": "now"}, "missing iat"),
                            ({"nbf": now + skew + 30}, "not yet valid"), ({"iss": "https://elsewhere"}, "wrong issuer")):
        with pytest.raises(jws.InvalidTokenError, match=reason):
            jws.verify(jwcrypto_token("ES256", **changes), jws.ID_TOKEN_TYP)
    expired = jwcrypto_token("ES256", exp=now - 3600)
    assert jws.verify(expired, jws.ID_TOKEN_TYP, check_expiry=False)["sub"] == "someone"
    with pytest.raises(jws.InvalidTokenError, match="wrong audience"):
        jws.verify(jwcrypto_token("ES256"), jws.ID_TOKEN_TYP, audience="another-rp")
    later = utcnow() + timedelta(seconds=120 + skew)
    with pytest.raises(jws.InvalidTokenError, match="expired"):
        jws.verify(jwcrypto_token("ES256"), jws.ID_TOKEN_TYP, now=later)


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c", "x" * 9000, "e30.e30.", "W10.e30.AAAA", "e30=.e30.AAAA", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", None, 5])
def test_garbage_is_refused(app_ctx, token):
    with pytest.raises(jws.InvalidTokenError):
        jws.verify(token, jws.ID_TOKEN_TYP)
