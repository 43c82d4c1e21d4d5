"""Grants made in an SSO session end with it, unless they were granted `offline_access`.

Refresh families keep the `sid` of the session they came from (none when offline). Ending a
session (sign-out, admin action, expiry noticed) revokes its bound families through the
`session_ended` signal; a session that merely timed out and was never seen again is caught
when its family is next refreshed.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import select

from idp.audit.actors import Actor
from idp.clock import utcnow
from idp.db import db
from idp.sessions.store import timed_out
from idp.sessions.models import SessionKind, UserSession
from idp.sessions.store import session_ended
from idp.tokens.refresh import revoke_families


def session_alive(sid: str, *, now: datetime | None = None) -> bool:
    """True while the SSO session with this public id exists and has not timed out."""
    row = db.session.scalar(select(UserSession).where(UserSession.sid == sid))
    return row is not None and not timed_out(current_app, row, now or utcnow())


def connect() -> None:
    """Revoke bound families whenever sessions end (wired by the app factory)."""
    session_ended.connect(_on_session_ended)


def _on_session_ended(sender, rows, reason: str, **_) -> None:
    """Ending an SSO session (logout, timeout, admin revoke) revokes the refresh tokens bound to it."""
    revoke_families(sids=[row.sid for row in rows if row.kind == SessionKind.SSO], include_offline=False, reason="session_ended", actor=Actor.SYSTEM)
