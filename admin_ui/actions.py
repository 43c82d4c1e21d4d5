"""Admin actions beyond a single domain service call; each writes its audit events (the request's edge commits, idp/db.py).

Account actions (password, disable, admin rights, sign-out everywhere) are idp/signout.py's
functions, which bump the token version and end every session and refresh family at once;
here they gain the rule that an admin cannot lock themselves out.
"""

from __future__ import annotations

from sqlalchemy import func, select

from idp import signout
from idp.audit.actors import Actor
from idp.db import db
from idp.errors import ValidationError
from idp.sessions.models import UserSession
from idp.sessions.service import end_session
from idp.users.models import User


def sign_out_everywhere(user: User, *, actor: str) -> int:
    """End every session and token of a user; returns how many sessions were signed in."""
    sessions = db.session.scalar(select(func.count(UserSession.id)).where(UserSession.user_id == user.id))
    signout.sign_out_everywhere(user, actor=actor)
    return sessions


def disable(user: User, *, actor: str) -> None:
    """Disable an account (its sessions and tokens end); an admin cannot disable their own account."""
    if actor == Actor.admin(user.id):
        raise ValidationError("you cannot disable your own account")
    signout.disable_user(user, actor=actor)


def delete(user: User, *, actor: str) -> None:
    """Delete an account with its sessions and grants; an admin cannot delete their own account."""
    if actor == Actor.admin(user.id):
        raise ValidationError("you cannot delete your own account")
    signout.delete_user(user, actor=actor)


def set_admin(user: User, is_admin: bool, *, actor: str) -> None:
    """Grant or revoke admin rights (the user's sessions end); an admin cannot revoke their own."""
    if not is_admin and actor == Actor.admin(user.id):
        raise ValidationError("you cannot revoke your own admin rights; ask another admin")
    signout.set_admin(user, is_admin, actor=actor)


def revoke_sessions(sids: list[str], *, actor: str) -> int:
    """End the sessions with these public ids (those already gone are skipped). Returns how many ended."""
    rows = list(db.session.scalars(select(UserSession).where(UserSession.sid.in_(sids)))) if sids else []
    for row in rows:
        end_session(row, reason="admin", actor=actor)
    return len(rows)
