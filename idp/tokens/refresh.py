"""Refresh tokens: opaque, stored as digests, one family per grant, rotated on every use.

Rotation is a single conditional UPDATE (`rotated_at IS NULL`), so any number of concurrent
refreshes of one token yield at most one success on SQLite and PostgreSQL alike. Presenting a
token that was already rotated revokes its whole family (RFC 9700 section 4.14.2), unless the
grace window (`REFRESH_TOKEN_REUSE_GRACE`, strict 0 by default) lets it be redeemed again; see
`_redeem_in_grace` for the exact rule.

Inside its write transaction a rotation holds the user's token-version lock shared (a PostgreSQL
advisory lock, `lock_token_version`, that a bump holds exclusive) and then share-locks the family's
row (SQLite's single write lock does both), in that order, the order a sign-out everywhere takes
them in. So a bump or a family revocation that commits while a rotation runs is seen by it (the
rotation refuses), and one that starts after waits for the rotation's commit and then finds, and
denies, the access token it issued. The user's row itself is never locked: with one user behind
many chains, share locks on it made every rotation write a new MultiXact into that one row.
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
from idp.errors import IdpError
from idp.metrics import REFRESH_GRACE, REFRESH_REUSE
from idp.security import REFRESH_TOKEN_PREFIX, digest, random_token
from idp.tokens.access import IssuedAccessToken, revoke_access_token
from idp.tokens.models import RefreshFamily, RefreshToken
from idp.users.models import User
from idp.users.service import lock_token_version


# Families whose access tokens one query denies (bind parameters stay far below every backend's limit).
DENY_BATCH = 1000


class InvalidRefreshToken(IdpError):
    """The refresh token cannot be used (RFC 6749 5.2 `invalid_grant`); `reason` is for logs only."""

    def __init__(self, reason: str):
        super().__init__("invalid refresh token")
        self.reason = reason


@dataclass(frozen=True)
class Rotation:
    """The outcome of a successful refresh: the family and the new token (shown to the client once)."""

    family: RefreshFamily
    token: str
    member: RefreshToken  # the new token's row


def _new_token(family: RefreshFamily, now: datetime, access: IssuedAccessToken | None = None) -> tuple[str, RefreshToken]:
    value = random_token(32, prefix=REFRESH_TOKEN_PREFIX)
    idle = timedelta(seconds=current_app.config["REFRESH_TOKEN_IDLE_TTL"])
    member = RefreshToken(family_id=family.id, token_digest=digest(value), created_at=now, expires_at=min(now + idle, family.expires_at))
    if access is not None:
        member.access_jti, member.access_expires_at = access.jti, access.expires_at
    db.session.add(member)
    return value, member


def pair_access_token(rotation: Rotation, access: IssuedAccessToken) -> None:
    """Remember the access token issued beside the rotation's new refresh token.

    Revoking the family then denies it too: RFC 7009 2.1 says revoking a refresh token SHOULD
    invalidate the access tokens of the same grant, and a detected reuse (RFC 9700 4.14.2) must
    cut off the attacker's access token as well as their refresh token.
    """
    rotation.member.access_jti = access.jti
    rotation.member.access_expires_at = access.expires_at


def start_family(
    *,
    client: Client,
    user: User | None,
    scope: str,
    sid: str | None = None,
    offline: bool = False,
    auth_time: datetime | None = None,
    acr: str | None = None,
    amr: tuple[str, ...] = (),
    now: datetime | None = None,
) -> Rotation:
    """Open a family for a new grant and return its first token."""
    now = now or utcnow()
    family = RefreshFamily(
        client_id=client.id,
        user_id=user.id if user else None,
        sid=sid,
        scope=scope,
        token_version=user.token_version if user else 1,
        auth_time=auth_time,
        acr=acr,
        amr=list(amr),
        offline=offline,
        created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["REFRESH_TOKEN_ABSOLUTE_TTL"]),
    )
    db.session.add(family)
    db.session.flush()
    return Rotation(family, *_new_token(family, now))


def lookup(value: str) -> tuple[RefreshToken, RefreshFamily] | None:
    """The presented token's row and its family (spent, expired or revoked alike), or None."""
    found = lookup_with_user(value)
    return found[:2] if found else None


def lookup_with_user(value: str) -> tuple[RefreshToken, RefreshFamily, User | None] | None:
    """As `lookup`, with the family's user (None for a family without one, or a deleted user), in one query."""
    if not value or len(value) > 256:
        return None
    found = db.session.execute(
        select(RefreshToken, RefreshFamily, User)
        .join(RefreshFamily, RefreshFamily.id == RefreshToken.family_id)
        .outerjoin(User, User.id == RefreshFamily.user_id)
        .where(RefreshToken.token_digest == digest(value))
    ).first()
    return (found[0], found[1], found[2]) if found else None


def rotate(
    value: str, *, client: Client, now: datetime | None = None,
    found: tuple[RefreshToken, RefreshFamily] | None = None, access: IssuedAccessToken | None = None,
) -> Rotation:
    """Spend `value` and return its successor; raise InvalidRefreshToken (keeping any revocation, `durable`).

    `found` is `lookup(value)` when the caller already made it; `access` is the access token the
    caller signed for this response, paired with the successor as it is stored (else the caller
    pairs it later, `pair_access_token`). The edge commits (idp/db.py): the token-version lock and
    the family's row lock are held until then, so a token-version bump or a revocation that starts
    meanwhile waits, and then denies what was issued.
    """
    now = now or utcnow()
    if not value or len(value) > 256:
        raise InvalidRefreshToken("malformed")
    found = found or lookup(value)
    if found is None:
        raise InvalidRefreshToken("unknown")
    token, family = found
    if family.client_id != client.id:
        # RFC 6749 6: bound to the client it was issued to. Another client holding it means it leaked.
        raise InvalidRefreshToken("wrong client")
    if family.revoked_at is not None:
        raise InvalidRefreshToken("family revoked")
    if now >= family.expires_at or now >= token.expires_at:
        raise InvalidRefreshToken("expired")

    # The successor is written first so that spending the token also links it (one UPDATE, the
    # atomic step of the rotation); a rotation that loses the race rolls the successor back.
    rotation = Rotation(family, *_new_token(family, now, access))
    db.session.flush()
    spent = db.session.execute(
        update(RefreshToken).where(RefreshToken.id == token.id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now, successor_id=rotation.member.id)
    )
    if spent.rowcount != 1:
        db.session.rollback()
        _redeem_in_grace(token.id, family.id, now)
        rotation = Rotation(family, *_new_token(family, now, access))
        db.session.flush()
        db.session.execute(update(RefreshToken).where(RefreshToken.id == token.id).values(successor_id=rotation.member.id))
    # Checked under the locks (PostgreSQL; SQLite already holds its single write lock): a bump or
    # revocation that committed while we waited is seen here. A refused rotation is rolled back, so
    # an outdated token is revoked with its family, not spent.
    if family.user_id is not None:
        lock_token_version(family.user_id, shared=True)
    revoked_at, user_current = _locked_state(family)
    if not user_current:
        db.session.rollback()
        _revoke_outdated(family.id)
        raise InvalidRefreshToken("outdated token version")
    if revoked_at is not None:
        db.session.rollback()
        raise InvalidRefreshToken("family revoked")
    return rotation


def _locked_state(family: RefreshFamily) -> tuple[datetime | None, bool]:
    """(the family's revocation time, whether its user exists, is enabled and still has the family's
    token version), as committed now; the family's row stays share-locked until our commit.

    Read in a statement of its own after the token-version lock was granted, so its snapshot has
    every bump committed before; a bump cannot commit after it while the lock is held.
    """
    query = (
        select(RefreshFamily.revoked_at, User.id, User.token_version, User.disabled_at)
        .select_from(RefreshFamily)
        .outerjoin(User, User.id == RefreshFamily.user_id)
        .where(RefreshFamily.id == family.id)
        .with_for_update(read=True, of=RefreshFamily)
    )
    row = db.session.execute(query).first()
    if row is None:  # the family went with its user (ON DELETE CASCADE)
        return None, False
    if family.user_id is None:
        return row.revoked_at, True
    return row.revoked_at, row.id is not None and row.disabled_at is None and row.token_version == family.token_version


def _revoke_outdated(family_id: int) -> None:
    family = db.session.get(RefreshFamily, family_id)
    if family is not None:
        # The refusal answers invalid_grant and rolls back; the revocation must stay.
        with durable("an outdated refresh token revokes its family"):
            revoke_family(family, reason="token_version", actor=Actor.SYSTEM)


def _redeem_in_grace(token_id: int, family_id: int, now: datetime) -> None:
    """Let a spent token be redeemed again inside the grace window, or treat it as reuse.

    RFC 9700 4.14.2 lets a server detect reuse by rotation; a strict server (grace 0, the default)
    revokes the family on any replay. A relying party that lost the successor (a crash, a response
    lost in transit, mod_auth_openidc refreshing without keeping the new token) can then never
    refresh again, so with a grace of G seconds (like Hydra's graceful refresh, Auth0's reuse
    interval) a token may be redeemed again when all of these hold:

    - at most G seconds have passed since it was first rotated (a fixed window, never extended);
    - it is the family's most recent rotation: its successor has never been used. Redeeming spends
      that unused successor and issues a new one in its place, so the family still has exactly
      one live token, and the relying party keeps whichever response it got last;
    - the other checks of a refresh pass (same client, family live, user unchanged).

    Any number of redemptions fit in the window. Anything else is reuse and revokes the family:
    a token past the window, one whose successor was used (the family moved on: a replay), and a
    successor spent by a redemption (it was superseded). Of concurrent redemptions one wins; the
    others only fail, since the successor they lost was spent by a redemption, not by a refresh.
    """
    grace = timedelta(seconds=current_app.config["REFRESH_TOKEN_REUSE_GRACE"])
    row = db.session.execute(select(RefreshToken.rotated_at, RefreshToken.successor_id).where(RefreshToken.id == token_id)).first()
    if not (grace and row and row.rotated_at and row.successor_id and now - row.rotated_at <= grace):
        _on_reuse(family_id)
        raise InvalidRefreshToken("reused")
    superseded = db.session.execute(
        update(RefreshToken).where(RefreshToken.id == row.successor_id, RefreshToken.rotated_at.is_(None)).values(rotated_at=now)
    )
    if superseded.rowcount != 1:
        db.session.rollback()
        if db.session.scalar(select(RefreshToken.successor_id).where(RefreshToken.id == token_id)) == row.successor_id:
            _on_reuse(family_id)  # the successor was refreshed: the family moved on
        raise InvalidRefreshToken("reused")
    record("refresh_token.grace_redeemed", actor=Actor.SYSTEM, target=f"refresh_family:{family_id}")
    REFRESH_GRACE.inc()


def _on_reuse(family_id: int) -> None:
    """A spent token came back outside what the grace window allows: the family dies."""
    family = db.session.get(RefreshFamily, family_id)
    if family is not None and family.revoked_at is None:
        # RFC 9700 4.14.2: the refusal rolls back, the family's revocation must stay.
        with durable("refresh-token reuse revokes its family"):
            revoke_family(family, reason="reuse", actor=Actor.SYSTEM)
            record("refresh_token.reuse_detected", actor=Actor.SYSTEM, target=f"refresh_family:{family.id}", client=family.client_id, user=family.user_id)
        REFRESH_REUSE.inc()


def revoke_family(family: RefreshFamily, *, reason: str, actor: str) -> None:
    """Revoke every token of a family and deny its unexpired access tokens; idempotent."""
    _revoke([family], reason=reason, actor=actor)


def _revoke(families: list[RefreshFamily], *, reason: str, actor: str) -> None:
    now = utcnow()
    live = [family for family in families if family.revoked_at is None]
    for family in live:
        family.revoked_at, family.revoked_reason = now, reason
        record("refresh_family.revoked", actor=actor, target=f"refresh_family:{family.id}", reason=reason, user=family.user_id)
    ids = [family.id for family in live]
    for start in range(0, len(ids), DENY_BATCH):
        issued = db.session.execute(
            select(RefreshToken.access_jti, RefreshToken.access_expires_at)
            .where(RefreshToken.family_id.in_(ids[start:start + DENY_BATCH]), RefreshToken.access_expires_at > now)
        )
        for jti, expires_at in issued.all():
            revoke_access_token(jti, expires_at)


def find_family(value: str) -> RefreshFamily | None:
    """The family a refresh token belongs to (rotated or not), or None."""
    found = lookup(value)
    return found[1] if found else None


def live_token(value: str, *, now: datetime | None = None) -> tuple[RefreshToken, RefreshFamily] | None:
    """The unspent, unexpired token and its live family, or None (for introspection)."""
    now = now or utcnow()
    found = lookup_with_user(value)
    if found is None:
        return None
    token, family, user = found
    if token.rotated_at is not None or family.revoked_at is not None or now >= token.expires_at or now >= family.expires_at:
        return None
    if family.user_id is not None:
        if user is None or user.is_disabled or user.token_version != family.token_version:
            return None
    return token, family


def revoke_families(*, user_id: int | None = None, sids: list[str] | None = None, include_offline: bool, reason: str, actor: str) -> int:
    """Revoke live families of a user or bound to sessions. Returns how many.

    OpenID Connect intends `offline_access` grants to outlive a logout, so session-ending revokes
    only session-bound families; signing out everywhere passes include_offline=True.
    """
    query = select(RefreshFamily).where(RefreshFamily.revoked_at.is_(None))
    if user_id is not None:
        query = query.where(RefreshFamily.user_id == user_id)
    if sids is not None:
        if not sids:
            return 0
        query = query.where(RefreshFamily.sid.in_(sids))
    if not include_offline:
        query = query.where(RefreshFamily.offline.is_(False))
    families = list(db.session.scalars(query))
    _revoke(families, reason=reason, actor=actor)
    return len(families)

