"""Purge of expired data: what no check will ever accept again, deleted in small batches.

Every purge
- deletes only rows that are dead for good: past their expiry by more than the clock skew the
  checks allow, so no process whose clock runs a little behind could still accept them;
- works in batches of PURGE_BATCH_SIZE rows, one short transaction each, selecting by an indexed
  timestamp, so memory stays bounded and locks are brief whatever the backlog;
- is idempotent: a rerun, or a run killed half-way, only leaves less to do for the next one.
Signing keys are purged by the rotation job (idp/keyring/rotation.py), not here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable

from flask import current_app
from sqlalchemy import ColumnElement, Table, and_, any_, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from idp.audit.actors import Actor
from idp.audit.models import AuditEvent
from idp.audit.service import record
from idp.auth.models import LoginThrottle
from idp.clock import utcnow
from idp.db import commit_now, db
from idp.jobs.models import JobRun
from idp.oauth.models import AuthorizationCode
from idp.onboarding.models import OneTimeLink
from idp.sessions.store import idle_ttl
from idp.sessions.models import SessionKind, UserSession
from idp.sessions.service import end_session
from idp.tasks.models import OutboxMessage
from idp.tokens.models import RefreshFamily, RefreshToken, RevokedAccessToken

SESSION_KINDS = tuple(SessionKind)


def purge_expired(now: datetime | None = None) -> dict[str, int]:
    """Delete every kind of expired row; returns how many of each (the `purge` job and `idp purge`)."""
    now = now or utcnow()
    config = current_app.config
    batch = config["PURGE_BATCH_SIZE"]
    cutoff = now - timedelta(seconds=config["CLOCK_SKEW"])
    counts = {
        "authorization_codes": purge_authorization_codes(cutoff, batch),
        **purge_refresh_tokens(cutoff, batch),
        "revoked_access_tokens": purge_denylist(cutoff, batch),
        "sessions": purge_sessions(cutoff, batch),
        "audit_events": purge_audit_events(now, config["AUDIT_RETENTION"], batch),
        "job_runs": purge_job_runs(now, config["JOB_RUN_RETENTION"], batch),
        "outbox_messages": purge_outbox(now, config["OUTBOX_RETENTION"], batch),
        "login_throttles": purge_login_throttles(now, batch),
        "one_time_links": purge_one_time_links(cutoff, batch),
    }
    if any(counts.values()):
        # Deleting audit events is itself worth an audit event.
        record("data.purged", actor=Actor.SYSTEM, **counts)
    return counts


def purge_authorization_codes(cutoff: datetime, batch: int) -> int:
    """Codes past their expiry (used or not): no redemption can succeed any more (RFC 6749 4.1.2)."""
    table = AuthorizationCode.__table__
    return _delete_in_batches(table, table.c.expires_at < cutoff, table.c.expires_at, batch)


def purge_refresh_tokens(cutoff: datetime, batch: int) -> dict[str, int]:
    """Refresh tokens past their idle expiry, then families with nothing left to refresh.

    A rotated or revoked token is kept until its own expiry, so presenting it is still recognised as
    reuse (RFC 9700 4.14.2) while that could matter. A family goes once it is past its absolute
    expiry, or once its last token is gone (revoked families included: their tokens no longer matter).
    """
    tokens, families = RefreshToken.__table__, RefreshFamily.__table__
    counts = {"refresh_tokens": 0, "refresh_families": 0}
    # Families past their absolute lifetime, with all their tokens.
    while ids := list(db.session.scalars(
        select(families.c.id).where(families.c.expires_at < cutoff).order_by(families.c.expires_at).limit(batch)
    )):
        counts["refresh_tokens"] += db.session.execute(delete(tokens).where(tokens.c.family_id.in_(ids))).rowcount
        counts["refresh_families"] += db.session.execute(delete(families).where(families.c.id.in_(ids))).rowcount
        commit_now("batch: a purge of a large backlog never holds one long transaction")
    # Tokens past their idle expiry; each batch tells which families may now be empty.
    while True:
        doomed = _first(tokens, tokens.c.expires_at < cutoff, tokens.c.expires_at, batch)
        owners = list(db.session.scalars(delete(tokens).where(doomed).returning(tokens.c.family_id)))
        if owners:
            counts["refresh_tokens"] += len(owners)
            counts["refresh_families"] += _delete_empty_families(set(owners), cutoff)
        commit_now("batch: a purge of a large backlog never holds one long transaction")
        if len(owners) < batch:
            return counts


def _delete_empty_families(family_ids: Iterable[int], cutoff: datetime) -> int:
    families, tokens = RefreshFamily.__table__, RefreshToken.__table__
    # A correlated `(SELECT ... LIMIT 1) IS NULL` rather than NOT EXISTS: the planner cannot turn it
    # into an anti-join, which PostgreSQL would run as a hash join over every token; it stays one
    # index probe per candidate. created_at spares a family whose first token is still being written.
    any_token = select(tokens.c.id).where(tokens.c.family_id == families.c.id).limit(1).scalar_subquery()
    empty = and_(_among(families.c.id, list(family_ids)), families.c.created_at < cutoff, any_token.is_(None))
    return db.session.execute(delete(families).where(empty)).rowcount


def purge_denylist(cutoff: datetime, batch: int) -> int:
    """Denylisted jtis whose access token has expired: the token is refused on `exp` alone now."""
    table = RevokedAccessToken.__table__
    return _delete_in_batches(table, table.c.expires_at < cutoff, table.c.expires_at, batch)


def purge_sessions(cutoff: datetime, batch: int) -> int:
    """Sessions past their absolute end or idle for longer than their kind allows.

    Ended through the sessions service, as when a browser next shows up with one: an audit event
    and the `session_ended` signal (back-channel logout) for each.
    """
    app = current_app._get_current_object()
    # Each condition walks an index: (expires_at), (kind, last_seen_at).
    conditions = [UserSession.expires_at < cutoff] + [
        and_(UserSession.kind == kind, UserSession.last_seen_at < cutoff - idle_ttl(app, kind)) for kind in SESSION_KINDS
    ]
    ended = 0
    for dead in conditions:
        while rows := list(db.session.scalars(select(UserSession).where(dead).limit(batch))):
            for row in rows:
                end_session(row, reason="expired", actor=Actor.SYSTEM)
            commit_now("batch: a purge of a large backlog never holds one long transaction")
            ended += len(rows)
    return ended


def purge_audit_events(now: datetime, retention_seconds: int, batch: int) -> int:
    """Audit events older than AUDIT_RETENTION (0 keeps them forever)."""
    if not retention_seconds:
        return 0
    table = AuditEvent.__table__
    return _delete_in_batches(table, table.c.occurred_at < now - timedelta(seconds=retention_seconds), table.c.occurred_at, batch)


def purge_job_runs(now: datetime, retention_seconds: int, batch: int) -> int:
    """Finished job runs older than JOB_RUN_RETENTION; the latest run of each job always stays."""
    table = JobRun.__table__
    latest = select(func.max(table.c.id)).group_by(table.c.job)
    old = and_(
        table.c.started_at < now - timedelta(seconds=retention_seconds),
        table.c.outcome != "running",
        table.c.id.not_in(latest.scalar_subquery()),
    )
    return _delete_in_batches(table, old, table.c.started_at, batch)


def purge_outbox(now: datetime, retention_seconds: int, batch: int) -> int:
    """Outbox messages handled (delivered or given up) longer than OUTBOX_RETENTION ago; never undone ones."""
    table = OutboxMessage.__table__
    return _delete_in_batches(table, table.c.done_at < now - timedelta(seconds=retention_seconds), table.c.done_at, batch)
def purge_one_time_links(cutoff: datetime, batch: int) -> int:
    """Mailed links past their expiry (spent or not): `is_open` refuses them on `expires_at` alone."""
    table = OneTimeLink.__table__
    return _delete_in_batches(table, table.c.expires_at < cutoff, table.c.expires_at, batch)


def purge_login_throttles(now: datetime, batch: int) -> int:
    """Throttle buckets with nothing left to remember: failures forgotten, no back-off, no known address."""
    config, table = current_app.config, LoginThrottle.__table__
    quiet_since = int(now.timestamp()) - config["LOGIN_THROTTLE_WINDOW"]
    known_since = int(now.timestamp()) - config["LOGIN_THROTTLE_KNOWN_IP_TTL"]
    dead = and_(table.c.last_failure_at < quiet_since, table.c.blocked_until < quiet_since, table.c.last_success_at < known_since)
    return _delete_in_batches(table, dead, table.c.last_failure_at, batch)


def _delete_in_batches(table: Table, dead: ColumnElement[bool], order: ColumnElement, batch: int) -> int:
    """DELETE the rows matching `dead`, `batch` at a time in timestamp order (an index walk), one commit each."""
    deleted = 0
    while True:
        count = db.session.execute(delete(table).where(_first(table, dead, order, batch))).rowcount
        commit_now("batch: a purge of a large backlog never holds one long transaction")
        deleted += count
        if count < batch:
            return deleted


def _among(key: ColumnElement, values: list) -> ColumnElement[bool]:
    """`key` is one of `values`: on PostgreSQL one array parameter, not thousands of bound values."""
    if db.engine.dialect.name == "postgresql":
        return key == any_(bindparam("values", values, type_=ARRAY(key.type)))
    return key.in_(values)


def _first(table: Table, dead: ColumnElement[bool], order: ColumnElement, batch: int) -> ColumnElement[bool]:
    """A condition on `table`'s key: one of the first `batch` rows matching `dead`, in `order` (an index walk).

    On PostgreSQL `key IN (subquery)` may be planned as a hash join over the whole table, making
    every batch cost the table's size; `key = ANY(ARRAY(subquery))` runs the subquery once and
    probes the primary key, so every batch costs the same however large the backlog.
    """
    key = next(iter(table.primary_key.columns))
    doomed = select(key).where(dead).order_by(order).limit(batch).scalar_subquery()
    if db.engine.dialect.name == "postgresql":
        return key == any_(func.array(doomed))
    return key.in_(doomed)
