"""Starting, ending and listing server-side sessions; other features hook `session_ended`."""

from __future__ import annotations

from blinker import Namespace
from flask import Flask, current_app, has_request_context, request, session
from sqlalchemy import inspect, select

from idp.audit.service import record
from idp.clock import utcnow
from idp.db import db
from idp.security import digest, random_token
from idp.sessions.interface import ServerSession, absolute_ttl
from idp.sessions.models import UserSession
from idp.users.models import User

_signals = Namespace()
# Sent with the ended rows (already flushed as deleted) and a reason, inside the transaction that
# ends them; receivers revoke bound tokens or queue back-channel logout.
session_ended = _signals.signal("session-ended")


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


def start_session(user: User, *, data: dict | None = None) -> UserSession:
    """Sign `user` in on this request's session kind, under a new id (no fixation); caller commits."""
    current: ServerSession = session._get_current_object()  # type: ignore[attr-defined]
    keep = dict(data or {})
    # The CSRF token of the form that signed in (an anonymous one: from its cookie) stays valid.
    token_key = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    if token_key in current:
        keep.setdefault(token_key, current[token_key])
    if current.row is not None and not inspect(current.row).was_deleted:  # e.g. a password change ended it
        db.session.delete(current.row)
    value, row = new_row(current_app, current.kind, user)
    current.clear()
    current.update(keep)
    current.row, current.cookie_value = row, value
    current.modified = True
    record("session.started", actor=f"user:{user.id}", target=f"session:{row.sid}", ip=row.ip, kind=current.kind)
    return row


def current_session_row() -> UserSession | None:
    """The row behind this request's session, if any."""
    return getattr(session, "row", None)


def end_session(row: UserSession, *, reason: str, actor: str | None = None) -> None:
    """Delete one session row (the browser is signed out at its next request); caller commits."""
    _end([row], reason=reason, actor=actor)


def end_current_session(*, reason: str = "logout") -> None:
    """End this request's session and clear its cookie; commits."""
    current: ServerSession = session._get_current_object()  # type: ignore[attr-defined]
    if current.row is not None:
        end_session(current.row, reason=reason, actor=f"user:{current.row.user_id}" if current.row.user_id else None)
    current.clear()
    current.row, current.cookie_value, current.ended = None, None, True
    current.modified = False
    db.session.commit()


def end_all_for_user(user_id: int, *, reason: str, actor: str, kind: str | None = None) -> int:
    """End every session of a user (optionally of one kind); caller commits. Returns how many."""
    query = select(UserSession).where(UserSession.user_id == user_id)
    if kind:
        query = query.where(UserSession.kind == kind)
    rows = list(db.session.scalars(query))
    _end(rows, reason=reason, actor=actor)
    return len(rows)


def _end(rows: list[UserSession], *, reason: str, actor: str | None) -> None:
    for row in rows:
        if row.user_id is not None:
            record("session.ended", actor=actor or "system", target=f"session:{row.sid}", reason=reason, user=row.user_id, kind=row.kind)
        db.session.delete(row)
    db.session.flush()
    if rows:
        session_ended.send(current_app._get_current_object(), rows=rows, reason=reason)


def list_sessions_for_user(user_id: int) -> list[UserSession]:
    """A user's signed-in sessions, newest first."""
    return list(db.session.scalars(
        select(UserSession).where(UserSession.user_id == user_id).order_by(UserSession.created_at.desc(), UserSession.id.desc())
    ))

