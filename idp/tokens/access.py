"""JWT access tokens (RFC 9068): issued with the keyring's active key, verified offline or here.

Verification is strict by construction: the `alg` comes from a fixed allow-list, never from the
token alone; keys come only from our own published keyring (a `jku`, `x5u`, `jwk` or `x5c`
header is refused, so nothing is ever fetched); the `typ` must be `at+jwt`, so an ID token is
never accepted as an access token (RFC 9068 section 4).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from jwcrypto import jws, jwt
from jwcrypto.common import JWException
from sqlalchemy import select

from idp.clock import utcnow
from idp.db import db
from idp.errors import IdpError
from idp.keyring.service import signing_key, verification_key
from idp.security import random_token
from idp.tokens.models import RevokedAccessToken
from idp.users.models import User

ACCESS_TOKEN_TYP = "at+jwt"
ALLOWED_ALGORITHMS = ("RS256", "ES256")
# Headers that would make a verifier fetch or trust a key named by the token itself.
FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
TOKEN_VERSION_CLAIM = "ver"
MAX_TOKEN_LENGTH = 8192


class InvalidTokenError(IdpError):
    """The token is malformed, forged, expired, revoked or outdated (RFC 6750 3.1 `invalid_token`)."""


@dataclass(frozen=True)
class IssuedAccessToken:
    """A signed access token and what the issuer needs to remember about it."""

    token: str
    jti: str
    expires_at: datetime
    expires_in: int


def audience() -> str:
    """The `aud` of access tokens: this issuer, whose userinfo endpoint is the resource they unlock."""
    return current_app.config["ISSUER"]


def issue_access_token(
    *,
    client_id: str,
    subject: str,
    scope: str,
    sid: str | None = None,
    token_version: int | None = None,
    auth_time: datetime | None = None,
    acr: str | None = None,
    amr: tuple[str, ...] | list[str] = (),
    now: datetime | None = None,
    alg: str = "RS256",
) -> IssuedAccessToken:
    """Sign an RFC 9068 access token; claims stay minimal because every API call carries them."""
    now = now or utcnow()
    ttl = current_app.config["ACCESS_TOKEN_TTL"]
    expires_at = now + timedelta(seconds=ttl)
    jti = random_token(16)
    claims = {
        "iss": current_app.config["ISSUER"],
        "sub": subject,
        "aud": audience(),
        "exp": int(expires_at.timestamp()),
        "iat": int(now.timestamp()),
        "jti": jti,
        "client_id": client_id,
        "scope": scope,
    }
    if sid:
        claims["sid"] = sid
    if token_version is not None:
        claims[TOKEN_VERSION_CLAIM] = token_version
    if auth_time is not None:
        claims["auth_time"] = int(auth_time.timestamp())
    if acr:  # RFC 9068 2.2.1: how the user authenticated, for resource servers that care
        claims["acr"] = acr
    if amr:
        claims["amr"] = list(amr)
    kid, key = signing_key(alg)
    token = jwt.JWT(header={"typ": ACCESS_TOKEN_TYP, "alg": alg, "kid": kid}, claims=claims)
    token.make_signed_token(key)
    return IssuedAccessToken(token=token.serialize(), jti=jti, expires_at=expires_at, expires_in=ttl)


def _header(token: str) -> dict:
    try:
        parsed = jws.JWS()
        parsed.deserialize(token)
        header = parsed.jose_header
    except (JWException, ValueError, TypeError):
        raise InvalidTokenError("malformed token") from None
    if not isinstance(header, dict):
        raise InvalidTokenError("malformed token")
    return header


def verify_signed_jwt(token: str) -> tuple[dict, dict]:
    """(header, claims) of a compact JWS signed by one of our published keys; claims unchecked.

    Raise InvalidTokenError for anything else: the shared first half of verifying our access
    tokens and ID tokens (used as hints).
    """
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise InvalidTokenError("malformed token")
    header = _header(token)
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise InvalidTokenError("unacceptable algorithm")
    if FORBIDDEN_HEADERS & header.keys():
        raise InvalidTokenError("unacceptable header")
    key = verification_key(str(header.get("kid", "")))
    if key is None:
        raise InvalidTokenError("unknown key")
    try:
        # jwcrypto checks the signature with exactly this algorithm; claims are the caller's.
        verified = jwt.JWT(jwt=token, key=key, algs=[alg], check_claims=False)
        claims = json.loads(verified.claims)
    except (JWException, ValueError, TypeError):
        raise InvalidTokenError("bad signature") from None
    if not isinstance(claims, dict):
        raise InvalidTokenError("malformed claims")
    return header, claims


def is_access_token_header(header: dict) -> bool:
    """True when the JOSE header says `at+jwt` (RFC 9068 2.1; the media-type form is accepted too)."""
    return str(header.get("typ", "")).lower() in (ACCESS_TOKEN_TYP, "application/" + ACCESS_TOKEN_TYP)


def verify_access_token(token: str, *, now: datetime | None = None, check_state: bool = True) -> dict:
    """Claims of a valid access token of this issuer; raise InvalidTokenError otherwise.

    With `check_state` (the default) the denylist and the user's token version are consulted too,
    which is what introspection and userinfo need for instant revocation.
    """
    header, claims = verify_signed_jwt(token)
    if not is_access_token_header(header):
        raise InvalidTokenError("not an access token")
    _check_claims(claims, now or utcnow())
    if check_state:
        check_access_token_state(claims)
    return claims


def _check_claims(claims: dict, now: datetime) -> None:
    skew = current_app.config["CLOCK_SKEW"]
    stamp = now.timestamp()
    if not isinstance(claims, dict) or claims.get("iss") != current_app.config["ISSUER"]:
        raise InvalidTokenError("wrong issuer")
    aud = claims.get("aud")
    if audience() not in (aud if isinstance(aud, list) else [aud]):
        raise InvalidTokenError("wrong audience")
    for name in ("exp", "iat"):
        if not isinstance(claims.get(name), int):
            raise InvalidTokenError(f"missing {name}")
    if claims["exp"] <= stamp - skew:
        raise InvalidTokenError("expired")
    if claims["iat"] > stamp + skew:
        raise InvalidTokenError("issued in the future")
    # RFC 7519 4.1.5: not to be accepted before `nbf` (we never set it, but a token may carry it).
    if "nbf" in claims and (not isinstance(claims["nbf"], int) or claims["nbf"] > stamp + skew):
        raise InvalidTokenError("not yet valid")
    for name in ("sub", "jti", "client_id"):
        if not isinstance(claims.get(name), str):
            raise InvalidTokenError(f"missing {name}")


def check_access_token_state(claims: dict) -> User | None:
    """Refuse a revoked jti, and a token older than its user's current token version; return that
    user (None for a client's own token). One round trip, as resource servers ask on every call."""
    revoked = select(RevokedAccessToken.jti).where(RevokedAccessToken.jti == claims["jti"]).exists()
    version = claims.get(TOKEN_VERSION_CLAIM)
    if version is None:
        # client_credentials tokens act for the client, not for a user
        if db.session.scalar(select(revoked)):
            raise InvalidTokenError("revoked")
        return None
    # populate_existing: a user already in this session may have been bumped by a bulk UPDATE.
    found = db.session.execute(
        select(User, revoked).where(User.subject == claims["sub"]).execution_options(populate_existing=True)
    ).first()
    if found is not None and found[1]:
        raise InvalidTokenError("revoked")
    if found is None or found[0].disabled_at is not None or found[0].token_version != version:
        raise InvalidTokenError("outdated")
    return found[0]


def revoke_access_token(jti: str, expires_at: datetime) -> None:
    """Deny a jti until the token would have expired anyway; idempotent."""
    if db.session.get(RevokedAccessToken, jti) is None:
        db.session.add(RevokedAccessToken(jti=jti, expires_at=expires_at, revoked_at=utcnow()))
