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

from idp.clock import utcnow
from idp.db import db
from idp.sessions.interface import timed_out
from idp.sessions.models import UserSession
from idp.sessions.service import session_ended
from idp.tokens.models import RefreshFamily
from idp.tokens.refresh import revoke_family


def session_alive(sid: str, *, now: datetime | None = None) -> bool:
    """True while the SSO session with this public id exists and has not timed out."""
    row = db.session.scalar(select(UserSession).where(UserSession.sid == sid))
    return row is not None and not timed_out(current_app, row, now or utcnow())


def revoke_session_families(sids: list[str], *, reason: str) -> int:
    """Revoke the live, session-bound refresh families of these sessions (caller commits)."""
    if not sids:
        return 0
    families = list(db.session.scalars(
        select(RefreshFamily).where(RefreshFamily.sid.in_(sids), RefreshFamily.offline.is_(False), RefreshFamily.revoked_at.is_(None))
    ))
    for family in families:
        revoke_family(family, reason=reason, actor="system")
    return len(families)


@session_ended.connect
def _on_session_ended(sender, rows, reason: str, **_) -> None:
    revoke_session_families([row.sid for row in rows if row.kind == "sso"], reason="session_ended")
