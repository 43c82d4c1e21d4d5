"""Authorization codes: stored as digests, claimed once with a conditional UPDATE, replay revokes.

RFC 6749 4.1.2: a code lives at most 10 minutes, is bound to its client and redirect URI, and
must not be used twice; a second redemption is refused and SHOULD revoke what the first one
issued. The claim is one `UPDATE ... WHERE used_at IS NULL`, so of any number of concurrent
redemptions at most one wins; the loser waits for the winner's commit and then sees (and
revokes) what it issued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.clients.models import Client
from idp.clock import utcnow
from idp.db import db, durable
from idp.oauth.models import AuthorizationCode
from idp.security import digest, random_token
from idp.tokens.access import IssuedAccessToken, revoke_access_token
from idp.tokens.models import RefreshFamily
from idp.tokens.refresh import revoke_family
from idp.users.models import User


@dataclass(frozen=True)
class CodeRequest:
    """What an authorization request decided, to be carried by its code into the tokens."""

    client: Client
    user: User
    redirect_uri: str  # as requested; "" when the request omitted it
    scope: str
    sid: str | None = None
    auth_time: datetime | None = None
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    acr: str | None = None
    amr: tuple[str, ...] = ()


def new_code_value() -> str:
    """A fresh code: 256 random bits."""
    return random_token(32)


def save_code(value: str, granted: CodeRequest, *, now: datetime | None = None) -> AuthorizationCode:
    """Store a code's digest and what it grants."""
    now = now or utcnow()
    row = AuthorizationCode(
        code_digest=digest(value),
        client_id=granted.client.id,
        user_id=granted.user.id,
        sid=granted.sid,
        redirect_uri=granted.redirect_uri,
        scope=granted.scope,
        nonce=granted.nonce,
        code_challenge=granted.code_challenge,
        code_challenge_method=granted.code_challenge_method,
        auth_time=granted.auth_time,
        acr=granted.acr,
        amr=list(granted.amr),
        token_version=granted.user.token_version,
        created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["AUTHORIZATION_CODE_TTL"]),
    )
    db.session.add(row)
    return row


def claim_code(value: str, client: Client, *, now: datetime | None = None) -> AuthorizationCode | None:
    """Mark the code used and return it, or None if it is unknown, expired, another client's or spent.

    The claim commits with the tokens it issues at the request's edge, so a request that fails
    later (PKCE, redirect_uri) rolls it back and leaves the code usable. A spent code revokes
    what it issued, kept though the request fails (`durable`).

    The UPDATE filters on the digest and `used_at` only, so its one possible plan is the unique
    digest index (a filter on `expires_at` let stale statistics pick the expiry index: 56 ms at
    scale, docs/performance.md); the client and the expiry are checked on the row it returns, and
    a claim they refuse is rolled back: the code stays unspent and is no replay.
    """
    now = now or utcnow()
    if not value or len(value) > 512:
        return None
    code_digest = digest(value)
    claimed = db.session.scalars(
        update(AuthorizationCode)
        .where(AuthorizationCode.code_digest == code_digest, AuthorizationCode.used_at.is_(None))
        .values(used_at=now)
        .returning(AuthorizationCode)
        .execution_options(populate_existing=True)
    ).first()
    if claimed is not None:
        if claimed.client_id == client.id and claimed.expires_at > now:
            return claimed
        db.session.rollback()  # another client's or expired: unspend it, as if the UPDATE matched nothing
        return None
    db.session.rollback()  # nothing of this request but the revocation below is kept
    row = db.session.scalar(select(AuthorizationCode).where(AuthorizationCode.code_digest == code_digest))
    if row is not None and row.used_at is not None:
        # RFC 6749 4.1.2: a second use should revoke what the code issued; the request fails.
        with durable("a reused code revokes what it issued"):
            _revoke_what_it_issued(row, presented_by=client)
    return None


def record_issued(row: AuthorizationCode, access: IssuedAccessToken, family: RefreshFamily | None) -> None:
    """Remember what the redemption issued, so a replay can revoke it (in the redemption's transaction)."""
    row.issued_access_jti = access.jti
    row.issued_access_expires_at = access.expires_at
    row.issued_family_id = family.id if family else None


def _revoke_what_it_issued(row: AuthorizationCode, *, presented_by: Client) -> None:
    if row.issued_family_id is not None:
        family = db.session.get(RefreshFamily, row.issued_family_id)
        if family is not None:
            revoke_family(family, reason="code_reuse", actor=Actor.SYSTEM)
    if row.issued_access_jti and row.issued_access_expires_at:
        revoke_access_token(row.issued_access_jti, row.issued_access_expires_at)
    record(
        "authorization_code.reuse_detected",
        actor=Actor.client(presented_by.client_id),
        target=f"authorization_code:{row.id}",
        user=row.user_id,
        client=row.client_id,
    )
