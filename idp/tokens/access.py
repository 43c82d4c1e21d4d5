"""JWT access tokens (RFC 9068): issued with the keyring's active key, verified offline or here.

Signing and the strict, held-to-spec verification are idp.keyring.jws's (alg allow-list, our own
published keys only, explicit `typ`); the `typ` must be `at+jwt`, so an ID token is never accepted
as an access token (RFC 9068 section 4). Here: the claims of RFC 9068 and the revocation state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from idp.clock import utcnow
from idp.db import db
from idp.keyring import jws
from idp.keyring.jws import ACCESS_TOKEN_TYP, InvalidTokenError
from idp.security import random_token
from idp.tokens.models import RevokedAccessToken
from idp.users.models import User

TOKEN_VERSION_CLAIM = "ver"


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
    token = jws.sign(claims, ACCESS_TOKEN_TYP, alg)
    return IssuedAccessToken(token=token, jti=jti, expires_at=expires_at, expires_in=ttl)


def verify_access_token(token: str, *, now: datetime | None = None, check_state: bool = True) -> dict:
    """Claims of a valid access token of this issuer; raise InvalidTokenError otherwise.

    With `check_state` (the default) the denylist and the user's token version are consulted too,
    which is what introspection and userinfo need for instant revocation.
    """
    claims = jws.verify(token, ACCESS_TOKEN_TYP, audience=audience(), now=now)
    for name in ("sub", "jti", "client_id"):  # RFC 9068 2.2: required claims
        if not isinstance(claims.get(name), str):
            raise InvalidTokenError(f"missing {name}")
    if check_state:
        check_access_token_state(claims)
    return claims


def check_access_token_state(claims: dict) -> None:
    """Refuse a revoked jti, and a token older than its user's current token version. One round
    trip of plain columns (no ORM objects), as resource servers ask on every introspection."""
    revoked = _revoked(claims)
    version = claims.get(TOKEN_VERSION_CLAIM)
    if version is None:
        # client_credentials tokens act for the client, not for a user: only the denylist applies
        if db.session.scalar(select(revoked)):
            raise InvalidTokenError("revoked")
        return
    users = User.__table__
    found = db.session.execute(
        select(users.c.disabled_at, users.c.token_version, revoked).where(users.c.subject == claims["sub"])
    ).first()
    if found is None:
        raise InvalidTokenError("outdated")  # no such user any more
    _refuse_stale(*found, version=version)


def live_user(claims: dict) -> User | None:
    """`check_access_token_state`, returning the token's user from the same round trip (None for a
    client's own token): userinfo needs the user's claims anyway."""
    if claims.get(TOKEN_VERSION_CLAIM) is None:
        check_access_token_state(claims)
        return None
    # populate_existing: a user already in this session may have been bumped by a bulk UPDATE.
    found = db.session.execute(
        select(User, _revoked(claims)).where(User.subject == claims["sub"]).execution_options(populate_existing=True)
    ).first()
    if found is None:
        raise InvalidTokenError("outdated")  # no such user any more
    user, revoked = found
    _refuse_stale(user.disabled_at, user.token_version, revoked, version=claims[TOKEN_VERSION_CLAIM])
    return user


def _revoked(claims: dict):
    return select(RevokedAccessToken.jti).where(RevokedAccessToken.jti == claims["jti"]).exists()


def _refuse_stale(disabled_at, token_version: int, revoked: bool, *, version) -> None:
    if revoked:
        raise InvalidTokenError("revoked")
    if disabled_at is not None or token_version != version:
        raise InvalidTokenError("outdated")


def revoke_access_token(jti: str, expires_at: datetime) -> None:
    """Deny a jti until the token would have expired anyway; idempotent."""
    if db.session.get(RevokedAccessToken, jti) is None:
        db.session.add(RevokedAccessToken(jti=jti, expires_at=expires_at, revoked_at=utcnow()))
