"""Starting, ending and listing server-side sessions; other features hook `session_ended`."""

from __future__ import annotations

from flask import current_app, session
from sqlalchemy import inspect, select

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.db import db
from idp.sessions.interface import ServerSession
from idp.sessions.models import UserSession
from idp.sessions.store import end_rows, end_session, new_row, session_ended
from idp.users.models import User

__all__ = ["current_session_row", "end_all_for_user", "end_current_session", "end_session", "find_session_of_user", "list_sessions_for_user",
           "new_row", "session_ended", "start_session"]

def start_session(user: User, *, data: dict | None = None) -> UserSession:
    """Sign `user` in on this request's session kind, under a new id (no fixation)."""
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
    record("session.started", actor=Actor.user(user.id), target=f"session:{row.sid}", ip=row.ip, kind=current.kind)
    return row


def current_session_row() -> UserSession | None:
    """The row behind this request's session, if any."""
    return getattr(session, "row", None)


def end_current_session(*, reason: str = "logout") -> None:
    """End this request's session and clear its cookie."""
    current: ServerSession = session._get_current_object()  # type: ignore[attr-defined]
    if current.row is not None:
        end_session(current.row, reason=reason, actor=Actor.user(current.row.user_id) if current.row.user_id else None)
    current.clear()
    current.row, current.cookie_value, current.ended = None, None, True
    current.modified = False


def end_all_for_user(user_id: int, *, reason: str, actor: str, kind: str | None = None) -> int:
    """End every session of a user (optionally of one kind). Returns how many."""
    query = select(UserSession).where(UserSession.user_id == user_id)
    if kind:
        query = query.where(UserSession.kind == kind)
    rows = list(db.session.scalars(query))
    end_rows(rows, reason=reason, actor=actor)
    return len(rows)


def list_sessions_for_user(user_id: int, *, kind: str | None = None) -> list[UserSession]:
    """A user's signed-in sessions (optionally of one kind), newest first."""
    query = select(UserSession).where(UserSession.user_id == user_id)
    if kind:
        query = query.where(UserSession.kind == kind)
    return list(db.session.scalars(query.order_by(UserSession.created_at.desc(), UserSession.id.desc())))


def find_session_of_user(user_id: int, sid: str, *, kind: str) -> UserSession | None:
    """The user's own session of `kind` with this public id, or None (another user's id finds nothing)."""
    return db.session.scalar(select(UserSession).where(UserSession.sid == sid, UserSession.user_id == user_id, UserSession.kind == kind))

