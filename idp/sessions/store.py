"""Session rows and their lifetimes: create, end, time out; `session_ended` for features that react.

Both the session interface (the cookie side) and the session service (sign-in, sign-out) build on
this module, which imports neither.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from blinker import Namespace
from flask import Flask, current_app, has_request_context, request

from idp.audit.service import record
from idp.clock import utcnow
from idp.db import db
from idp.security import digest, random_token
from idp.sessions.models import SessionKind, UserSession
from idp.users.models import User

_signals = Namespace()
# Sent with the ended rows (already flushed as deleted) and a reason, inside the transaction that
# ends them; receivers revoke bound tokens or queue back-channel logout.
session_ended = _signals.signal("session-ended")


def idle_ttl(app: Flask, kind: str) -> timedelta:
    """How long a session of `kind` may go unused."""
    return timedelta(seconds=app.config["ADMIN_SESSION_IDLE_TTL" if kind == SessionKind.ADMIN else "SSO_SESSION_IDLE_TTL"])


def absolute_ttl(app: Flask, kind: str) -> timedelta:
    """How long a session of `kind` lasts after sign-in, however used."""
    return timedelta(seconds=app.config["ADMIN_SESSION_ABSOLUTE_TTL" if kind == SessionKind.ADMIN else "SSO_SESSION_ABSOLUTE_TTL"])


def timed_out(app: Flask, row: UserSession, now: datetime) -> bool:
    """True once a session is past its absolute end or idle for longer than the idle TTL."""
    return now >= row.expires_at or now >= row.last_seen_at + idle_ttl(app, row.kind)


def new_row(app: Flask, kind: str, user: User | None = None) -> tuple[str, UserSession]:
    """Insert a fresh row with a new random id (≥ 256 bits); return (cookie value, row)."""
    value = random_token(32)
    now = utcnow()
    row = UserSession(
        id_digest=digest(value),
        sid=random_token(16),
        kind=kind,
        user_id=user.id if user else None,
        token_version=user.token_version if user else None,
        data={},
        created_at=now,
        last_seen_at=now,
        auth_time=now if user else None,
        expires_at=now + absolute_ttl(app, kind),
        ip=request.remote_addr if has_request_context() else None,
        user_agent=(request.user_agent.string or "")[:512] if has_request_context() else None,
    )
    db.session.add(row)
    db.session.flush()
    return value, row


def end_session(row: UserSession, *, reason: str, actor: str | None = None) -> None:
    """Delete one session row (the browser is signed out at its next request)."""
    end_rows([row], reason=reason, actor=actor)


def end_rows(rows: list[UserSession], *, reason: str, actor: str | None) -> None:
    """Delete session rows (audited), then tell `session_ended` receivers."""
    for row in rows:
        if row.user_id is not None:
            record("session.ended", actor=actor or "system", target=f"session:{row.sid}", reason=reason, user=row.user_id, kind=row.kind)
        db.session.delete(row)
    db.session.flush()
    if rows:
        session_ended.send(current_app._get_current_object(), rows=rows, reason=reason)
