"""What the admin pages read: bounded counts, keyset-paginated lists, and no N+1.

Every list is ordered by an indexed key and read one page at a time (see keyset.py); nothing
here counts a whole table per request. Writes live in the domain services and admin_ui/actions.py.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Select, and_, func, or_, select, text

from admin_ui.keyset import Page, paginate
from idp.audit.models import AuditEvent
from idp.clients.models import Client
from idp.clock import utcnow
from idp.db import db
from idp.keyring.models import SigningKey
from idp.oauth.models import AuthorizationCode, Consent
from idp.sessions.models import SessionKind, UserSession
from idp.tokens.models import RefreshFamily
from idp.users.models import User

log = logging.getLogger(__name__)

# Counting past this many rows costs more than it tells: above it, PostgreSQL's planner estimate is shown.
COUNT_LIMIT = 10_000

# Audit actions the dashboard lists as security events (reuse detections, failed sign-ins, ...).
SECURITY_EVENT_ACTIONS = (
    "refresh_token.reuse_detected",
    "authorization_code.reuse_detected",
    "user.sign_in_failed",
    "admin.sign_in_refused",
    "admin.reauth_failed",
    "auth.throttled",
    "throttle.cleared",
    "key.revoked",
    "user.admin_granted",
    "user.disabled",
)


def page_size() -> int:
    """Rows per list page (IDP_ADMIN_PAGE_SIZE)."""
    return current_app.config["ADMIN_PAGE_SIZE"]


# --- counts -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """A row count: exact up to COUNT_LIMIT, else the planner's estimate (never below the limit)."""

    value: int
    exact: bool


def bounded_count(query: Select) -> Count:
    """Count the rows of `query`, reading at most COUNT_LIMIT + 1 of them."""
    counted = db.session.scalar(select(func.count()).select_from(query.limit(COUNT_LIMIT + 1).subquery()))
    if counted <= COUNT_LIMIT:
        return Count(counted, True)
    return Count(max(planner_estimate(query) or 0, COUNT_LIMIT), False)


def planner_estimate(query: Select) -> int | None:
    """PostgreSQL's estimate of how many rows `query` returns (from table statistics), or None elsewhere."""
    bind = db.session.get_bind()
    if bind.dialect.name != "postgresql":
        return None
    sql = str(query.compile(dialect=bind.dialect, compile_kwargs={"literal_binds": True}))
    try:
        # A savepoint: a failed EXPLAIN aborts only itself, never the rest of the request's transaction
        # (PostgreSQL refuses every later statement of an aborted one) nor what it already did.
        with db.session.begin_nested():
            plan = db.session.execute(text("EXPLAIN (FORMAT JSON) " + sql.replace(":", r"\:"))).scalar()
    except Exception:  # an estimate is a nicety: never let it break the page
        log.warning("could not estimate a row count", exc_info=True)
        return None
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


def active_sessions_condition(now: datetime):
    """Signed-in sessions that are neither past their absolute end nor idle for too long."""
    config = current_app.config
    return and_(
        UserSession.user_id.is_not(None),
        UserSession.expires_at > now,
        or_(
            and_(UserSession.kind == SessionKind.ADMIN, UserSession.last_seen_at > now - timedelta(seconds=config["ADMIN_SESSION_IDLE_TTL"])),
            and_(UserSession.kind != SessionKind.ADMIN, UserSession.last_seen_at > now - timedelta(seconds=config["SSO_SESSION_IDLE_TTL"])),
        ),
    )


def dashboard_counts(now: datetime | None = None) -> dict[str, Count]:
    """Users, clients, active sessions and live refresh families, each bounded."""
    now = now or utcnow()
    return {
        "users": bounded_count(select(User.id)),
        "clients": bounded_count(select(Client.id)),
        "sessions": bounded_count(select(UserSession.id).where(active_sessions_condition(now))),
        "refresh_families": bounded_count(
            select(RefreshFamily.id).where(RefreshFamily.revoked_at.is_(None), RefreshFamily.expires_at > now)
        ),
    }


# --- users ------------------------------------------------------------------------------------------

USER_STATUSES = {"": "All users", "admins": "Admins", "active": "Enabled", "disabled": "Disabled"}


def escape_like(value: str) -> str:
    """Escape LIKE's wildcards so user input matches literally (ESCAPE '\\')."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def users_page(prefix: str = "", status: str = "", *, after: str | None = None, before: str | None = None) -> Page:
    """Users by email, optionally those whose email starts with `prefix`; keyset-paginated on email."""
    query = select(User)
    prefix = prefix.strip().lower()
    if prefix:
        # The lower bound lets an in-order scan of the email index start at the prefix on any
        # collation; LIKE (served by ix_users_email_pattern on PostgreSQL) keeps the match exact.
        query = query.where(User.email.like(escape_like(prefix) + "%", escape="\\"), User.email >= prefix)
        if db.session.get_bind().dialect.name == "sqlite":
            # SQLite compares bytes, so the prefix's successor bounds the range (its LIKE ignores indexes).
            query = query.where(User.email < prefix[:-1] + chr(ord(prefix[-1]) + 1))
    if status == "admins":
        query = query.where(User.is_admin)  # as ix_users_admin_email's predicate (`IS TRUE` would not use it)
    elif status == "active":
        query = query.where(User.disabled_at.is_(None))
    elif status == "disabled":
        query = query.where(User.disabled_at.is_not(None))
    return paginate(query, [User.email], key=lambda user: (user.email,), after=after, before=before,
                    size=page_size(), descending=False, scalars=True)


@dataclass(frozen=True)
class Grant:
    """What a user granted one client: remembered consent and live refresh-token families."""

    client: Client
    scope: str
    granted_at: datetime | None
    live_families: int


def user_grants(user_id: int, now: datetime | None = None) -> list[Grant]:
    """A user's grants per client (consents and live refresh families), in two queries."""
    now = now or utcnow()
    consents = {
        consent.client_id: (consent, client)
        for consent, client in db.session.execute(
            select(Consent, Client).join(Client, Client.id == Consent.client_id).where(Consent.user_id == user_id)
        )
    }
    families = {
        client.id: (client, count)
        for client, count in db.session.execute(
            select(Client, func.count(RefreshFamily.id))
            .join(RefreshFamily, RefreshFamily.client_id == Client.id)
            .where(RefreshFamily.user_id == user_id, RefreshFamily.revoked_at.is_(None), RefreshFamily.expires_at > now)
            .group_by(Client.id)
        )
    }
    grants = []
    for client_pk in consents.keys() | families.keys():
        consent, client = consents.get(client_pk, (None, None))
        client = client or families[client_pk][0]
        grants.append(Grant(
            client=client,
            scope=consent.scope if consent else "",
            granted_at=consent.granted_at if consent else None,
            live_families=families.get(client_pk, (None, 0))[1],
        ))
    return sorted(grants, key=lambda grant: (grant.client.name.lower(), grant.client.id))


def recent_events_for(target: str, limit: int = 10) -> list[AuditEvent]:
    """The latest audit events about one object."""
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.target == target).order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc()).limit(limit)
    ))


# --- clients ----------------------------------------------------------------------------------------


def clients_page(*, after: str | None = None, before: str | None = None) -> Page:
    """Clients, newest first."""
    return paginate(select(Client), [Client.created_at, Client.id], key=lambda client: (client.created_at, client.id),
                    after=after, before=before, size=page_size(), scalars=True)


def client_choices(limit: int = 500) -> list[tuple[str, str]]:
    """(client_id, name) of clients for a filter menu, by name."""
    return [(client_id, name) for client_id, name in db.session.execute(
        select(Client.client_id, Client.name).order_by(Client.name, Client.id).limit(limit)
    )]


# --- sessions ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRow:
    """A session with its user's email and the clients that use it."""

    session: UserSession
    email: str
    clients: list[tuple[str, str]]


# A client bound to at least this many sessions counts as busy (see `of_client`).
BUSY_CLIENT_SESSIONS = 5_000


def of_client(client_pk: int):
    """Sessions a client holds grants in (a refresh family or an authorization code carries their sid).

    Two plans, because one cannot serve both ends: for a quiet client, join its few sids to the
    sessions and sort them; for a busy one, walk the sessions newest first and probe the client's
    index per row, stopping at a page. `OFFSET 0` keeps PostgreSQL from hashing every sid of a busy
    client before the walk (it cannot turn an EXISTS with an OFFSET into a hashed subplan).
    """
    families = select(RefreshFamily.sid).where(RefreshFamily.client_id == client_pk, RefreshFamily.sid.is_not(None))
    codes = select(AuthorizationCode.sid).where(AuthorizationCode.client_id == client_pk, AuthorizationCode.sid.is_not(None))
    bound = db.session.scalar(select(func.count()).select_from(families.union_all(codes).limit(BUSY_CLIENT_SESSIONS).subquery()))
    if bound < BUSY_CLIENT_SESSIONS:
        return UserSession.sid.in_(families.union(codes))
    return or_(
        select(1).where(RefreshFamily.sid == UserSession.sid, RefreshFamily.client_id == client_pk).offset(0).exists(),
        select(1).where(AuthorizationCode.sid == UserSession.sid, AuthorizationCode.client_id == client_pk).offset(0).exists(),
    )


def sessions_page(
    *,
    user_id: int | None = None,
    client_pk: int | None = None,
    kind: str = "",
    after: str | None = None,
    before: str | None = None,
    now: datetime | None = None,
) -> Page:
    """Active sessions, newest first, optionally of one user, one client or one kind."""
    now = now or utcnow()
    query = (
        select(UserSession, User.email)
        .join(User, User.id == UserSession.user_id)
        .where(active_sessions_condition(now))
    )
    if user_id is not None:
        query = query.where(UserSession.user_id == user_id)
    if client_pk is not None:
        query = query.where(of_client(client_pk))
    if kind:
        query = query.where(UserSession.kind == kind)
    page = paginate(query, [UserSession.created_at, UserSession.id], key=lambda row: (row[0].created_at, row[0].id),
                    after=after, before=before, size=page_size())
    clients = clients_by_sid([row[0].sid for row in page.rows])
    rows = [SessionRow(session=row[0], email=row[1], clients=clients.get(row[0].sid, [])) for row in page.rows]
    return Page(rows=rows, next_cursor=page.next_cursor, prev_cursor=page.prev_cursor)


def clients_by_sid(sids: list[str]) -> dict[str, list[tuple[str, str]]]:
    """For a page of sessions: sid -> [(client_id, name)] of the clients bound to it, in one query."""
    if not sids:
        return {}
    bound = (
        select(RefreshFamily.sid.label("sid"), RefreshFamily.client_id.label("client_pk")).where(RefreshFamily.sid.in_(sids))
        .union(select(AuthorizationCode.sid, AuthorizationCode.client_id).where(AuthorizationCode.sid.in_(sids)))
        .subquery()
    )
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for sid, client_id, name in db.session.execute(
        select(bound.c.sid, Client.client_id, Client.name).join(Client, Client.id == bound.c.client_pk).order_by(Client.name)
    ):
        found[sid].append((client_id, name))
    return found


# --- audit ------------------------------------------------------------------------------------------


def audit_page(
    *,
    actor: str = "",
    action: str = "",
    target: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    after: str | None = None,
    before: str | None = None,
) -> Page:
    """Audit events, newest first, filtered by exact actor, action and target and a time range."""
    query = select(AuditEvent)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if action:
        query = query.where(AuditEvent.action == action)
    if target:
        query = query.where(AuditEvent.target == target)
    if since:
        query = query.where(AuditEvent.occurred_at >= since)
    if until:
        query = query.where(AuditEvent.occurred_at < until)
    return paginate(query, [AuditEvent.occurred_at, AuditEvent.id], key=lambda event: (event.occurred_at, event.id),
                    after=after, before=before, size=page_size(), scalars=True)


def recent_security_events(limit: int = 10) -> list[AuditEvent]:
    """The latest security events: one short index read per action, merged."""
    events: list[AuditEvent] = []
    for action in SECURITY_EVENT_ACTIONS:
        events.extend(db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc()).limit(limit)
        ))
    return sorted(events, key=lambda event: (event.occurred_at, event.id), reverse=True)[:limit]


# --- keys and jobs ----------------------------------------------------------------------------------


def keys_by_algorithm(keys: list[SigningKey]) -> dict[str, list[SigningKey]]:
    """Keys grouped per algorithm, each group newest first."""
    grouped: dict[str, list[SigningKey]] = defaultdict(list)
    for key in sorted(keys, key=lambda k: (k.alg, k.created_at, k.id), reverse=True):
        grouped[key.alg].append(key)
    return dict(sorted(grouped.items()))
