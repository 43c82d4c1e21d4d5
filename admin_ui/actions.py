"""Admin actions that span domains; each writes its audit events and commits once.

The single-domain steps live in the domain services (users, clients, sessions, tokens); these
compose them the way an admin means them, e.g. "disable" = disable the account and end its
sessions now (so `session_ended` receivers, such as back-channel logout, run at once rather than
when the browser next calls).
"""

from __future__ import annotations

from sqlalchemy import delete, select

from idp.audit.service import record
from idp.clients.models import Client
from idp.clock import utcnow
from idp.db import db
from idp.errors import ValidationError
from idp.oauth.models import Consent
from idp.sessions.models import UserSession
from idp.sessions.service import end_all_for_user, end_session
from idp.tokens.models import RefreshFamily
from idp.tokens.refresh import revoke_family
from idp.users import service as users
from idp.users.models import User


def sign_out_everywhere(user: User, *, actor: str) -> int:
    """End every session and token of a user: bump the token version and delete the session rows."""
    users.bump_token_version(user, reason="sign_out_everywhere", actor=actor)
    ended = end_all_for_user(user.id, reason="sign_out_everywhere", actor=actor)
    db.session.commit()
    return ended


def disable(user: User, *, actor: str) -> None:
    """Disable an account and end its sessions now; an admin cannot disable their own account."""
    if actor == f"user:{user.id}":
        raise ValidationError("you cannot disable your own account")
    end_all_for_user(user.id, reason="disabled", actor=actor)
    users.disable_user(user, actor=actor)  # commits


def enable(user: User, *, actor: str) -> None:
    """Let a disabled account sign in again."""
    users.enable_user(user, actor=actor)
    db.session.commit()


def set_password(user: User, password: str, *, actor: str) -> None:
    """Set a user's password; every session and token signed in with the old one ends."""
    users.set_password(user, password, actor=actor)
    end_all_for_user(user.id, reason="password_set", actor=actor)
    db.session.commit()


def set_admin(user: User, is_admin: bool, *, actor: str) -> None:
    """Grant or revoke admin rights (ends the user's sessions); an admin cannot revoke their own."""
    if not is_admin and actor == f"user:{user.id}":
        raise ValidationError("you cannot revoke your own admin rights; ask another admin")
    if user.is_admin != is_admin:
        users.set_admin(user, is_admin, actor=actor)
        end_all_for_user(user.id, reason="admin_rights_changed", actor=actor)
    db.session.commit()


def revoke_grant(user: User, client: Client, *, actor: str) -> int:
    """Forget a user's consent to a client and revoke their live refresh families there. Returns families revoked."""
    now = utcnow()
    families = list(db.session.scalars(
        select(RefreshFamily).where(
            RefreshFamily.user_id == user.id, RefreshFamily.client_id == client.id,
            RefreshFamily.revoked_at.is_(None), RefreshFamily.expires_at > now,
        )
    ))
    for family in families:
        revoke_family(family, reason="admin", actor=actor)
    db.session.execute(delete(Consent).where(Consent.user_id == user.id, Consent.client_id == client.id))
    record("grant.revoked", actor=actor, target=f"user:{user.id}", client=client.client_id, families=len(families))
    db.session.commit()
    return len(families)


def revoke_sessions(sids: list[str], *, actor: str) -> int:
    """End the sessions with these public ids (those already gone are skipped). Returns how many ended."""
    rows = list(db.session.scalars(select(UserSession).where(UserSession.sid.in_(sids)))) if sids else []
    for row in rows:
        end_session(row, reason="admin", actor=actor)
    db.session.commit()
    return len(rows)
