"""The one JOSE module: compact JWS (RFC 7515) signing and verification of every JWT we issue.

Access tokens (`at+jwt`, RFC 9068), ID tokens (`JWT`, OpenID Connect Core 2) and logout tokens
(`logout+jwt`, Back-Channel Logout 1.0 section 2.4) are all signed here with the keyring's active
key, and access tokens and ID tokens handed back as hints are verified here.

Signing goes straight to the `cryptography` key objects the keyring snapshot holds (jwcrypto
builds the key; wrapping it in a `jwt.JWT` per token cost more than the signature itself): the
protected header of a (alg, kid, typ) is encoded once, the claims are JSON-encoded and base64url
encoded, and the signing input is signed (RFC 7515 5.1). The output is an ordinary compact JWS
that jwcrypto, and any other library, verifies.

Verification is strict by construction (RFC 8725):
- the `alg` comes from the fixed allow-list `ALGORITHMS` and must be the alg of the key its `kid`
  names (RFC 8725 3.1), so `none` and HMAC keyed with a public key can never pass;
- keys come only from our own published keyring: a `jku`, `x5u`, `jwk`, `x5c` or `crit` header is
  refused, so nothing is ever fetched or trusted because the token names it;
- the `typ` is explicit (RFC 8725 3.11), so no kind of token passes for another;
- `iss` is this issuer, `iat`, `nbf` and `exp` are checked with the configured clock skew.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from flask import current_app

from idp.clock import utcnow
from idp.errors import IdpError
from idp.keyring.models import ALGORITHMS
from idp.keyring.service import signer, verifier

__all__ = ["ALGORITHMS", "ACCESS_TOKEN_TYP", "ID_TOKEN_TYP", "LOGOUT_TOKEN_TYP", "InvalidTokenError", "sign", "verify"]

ACCESS_TOKEN_TYP = "at+jwt"  # RFC 9068 2.1
ID_TOKEN_TYP = "JWT"  # what ID tokens have always carried; RFC 7519 5.1
LOGOUT_TOKEN_TYP = "logout+jwt"  # Back-Channel Logout 1.0 section 2.4
# Headers that would make a verifier fetch or trust a key named by the token itself, or (crit)
# demand an extension we do not implement (RFC 7515 4.1.11).
FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
MAX_TOKEN_LENGTH = 8192
# What a token of the wrong `typ` is refused with, per expected `typ`.
_WRONG_TYP = {ACCESS_TOKEN_TYP: "not an access token", ID_TOKEN_TYP: "not an ID token", LOGOUT_TOKEN_TYP: "not a logout token"}
ES256_COORDINATE_BYTES = 32  # RFC 7518 3.4: R and S as 32-byte big-endian integers
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_SHA256 = hashes.SHA256()
_PKCS1 = padding.PKCS1v15()
_ECDSA = ec.ECDSA(_SHA256)


class InvalidTokenError(IdpError):
    """The token is malformed, forged, expired, revoked or outdated (RFC 6750 3.1 `invalid_token`)."""


def b64encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict base64url without padding: anything outside the alphabet is refused (ValueError)."""
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=64)  # a handful of (alg, kid, typ) at a time; rotations bring a few more
def _encoded_header(alg: str, kid: str, typ: str) -> str:
    return b64encode(json.dumps({"alg": alg, "kid": kid, "typ": typ}, separators=(",", ":")).encode())


def sign(claims: dict, typ: str, alg: str = "RS256") -> str:
    """A compact JWS of `claims` with header {alg, kid, typ}, signed by the active key of `alg`."""
    if alg not in ALGORITHMS:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    kid, key = signer(alg)
    signing_input = _encoded_header(alg, kid, typ) + "." + b64encode(json.dumps(claims, separators=(",", ":")).encode())
    data = signing_input.encode("ascii")
    if alg == "RS256":
        signature = key.sign(data, _PKCS1, _SHA256)  # RFC 7518 3.3
    else:
        r, s = decode_dss_signature(key.sign(data, _ECDSA))  # RFC 7518 3.4: DER to R || S
        signature = r.to_bytes(ES256_COORDINATE_BYTES, "big") + s.to_bytes(ES256_COORDINATE_BYTES, "big")
    return signing_input + "." + b64encode(signature)


def typ_matches(header: dict, typ: str) -> bool:
    """The header's `typ` is `typ`, compared case-insensitively, with or without "application/" (RFC 7515 4.1.9)."""
    value = header.get("typ")
    return isinstance(value, str) and value.lower() in (typ.lower(), "application/" + typ.lower())


def verify_signature(token: str) -> tuple[dict, dict]:
    """(header, claims) of a compact JWS signed by one of our published keys; claims unchecked.

    Raise InvalidTokenError for anything else.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise InvalidTokenError("malformed token")
    encoded_header, encoded_claims, encoded_signature = token.split(".")
    try:
        header = json.loads(b64decode(encoded_header))
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidTokenError("malformed token") from None
    if not isinstance(header, dict):
        raise InvalidTokenError("malformed token")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise InvalidTokenError("unacceptable algorithm")
    if FORBIDDEN_HEADERS & header.keys():
        raise InvalidTokenError("unacceptable header")
    kid = header.get("kid")
    found = verifier(kid) if isinstance(kid, str) else None
    if found is None:
        raise InvalidTokenError("unknown key")
    key_alg, key = found
    if key_alg != alg:  # RFC 8725 3.1: a key is used with the one algorithm it was made for
        raise InvalidTokenError("unacceptable algorithm")
    try:
        signature = b64decode(encoded_signature)
        _check(key, alg, signature, (encoded_header + "." + encoded_claims).encode("ascii"))
        claims = json.loads(b64decode(encoded_claims))
    except (InvalidSignature, ValueError, UnicodeError, binascii.Error):
        raise InvalidTokenError("bad signature") from None
    if not isinstance(claims, dict):
        raise InvalidTokenError("malformed claims")
    return header, claims


def _check(key, alg: str, signature: bytes, data: bytes) -> None:
    if alg == "RS256":
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidSignature
        key.verify(signature, data, _PKCS1, _SHA256)
        return
    if not isinstance(key, ec.EllipticCurvePublicKey) or len(signature) != 2 * ES256_COORDINATE_BYTES:
        raise InvalidSignature
    r = int.from_bytes(signature[:ES256_COORDINATE_BYTES], "big")
    s = int.from_bytes(signature[ES256_COORDINATE_BYTES:], "big")
    key.verify(encode_dss_signature(r, s), data, _ECDSA)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def verify(token: str, typ: str, *, audience: str | None = None, check_expiry: bool = True,
           now: datetime | None = None) -> dict:
    """The claims of a JWT of ours of this `typ`; raise InvalidTokenError otherwise.

    Checked: the signature (see the module docstring), `typ`, `iss` (this issuer), `aud` contains
    `audience` when given, `iat` present and not in the future, `nbf` if present, and `exp` unless
    `check_expiry` is False (hints: an expired ID token is still a hint), all with the clock skew.
    """
    header, claims = verify_signature(token)
    if not typ_matches(header, typ):
        raise InvalidTokenError(_WRONG_TYP.get(typ, f"not a {typ} token"))
    config = current_app.config
    skew, stamp = config["CLOCK_SKEW"], (now or utcnow()).timestamp()
    if claims.get("iss") != config["ISSUER"]:
        raise InvalidTokenError("wrong issuer")
    if audience is not None:
        aud = claims.get("aud")
        if audience not in (aud if isinstance(aud, list) else [aud]):
            raise InvalidTokenError("wrong audience")
    if check_expiry:
        if not _integer(claims.get("exp")):
            raise InvalidTokenError("missing exp")
        if claims["exp"] <= stamp - skew:  # RFC 7519 4.1.4
            raise InvalidTokenError("expired")
    if not _integer(claims.get("iat")):
        raise InvalidTokenError("missing iat")
    if claims["iat"] > stamp + skew:
        raise InvalidTokenError("issued in the future")
    # RFC 7519 4.1.5: not to be accepted before `nbf` (we never set it, but a token may carry it).
    if "nbf" in claims and (not _integer(claims["nbf"]) or claims["nbf"] > stamp + skew):
        raise InvalidTokenError("not yet valid")
    return claims
