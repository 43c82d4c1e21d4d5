"""What the account page shows and does, for one user."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select

from idp.audit.service import record
from idp.auth.service import throttled_check
from idp.clients.models import Client
from idp.db import db
from idp.errors import NotFoundError, ValidationError
from idp.oauth.models import Consent
from idp.sessions.models import UserSession
from idp.sessions.service import end_session
from idp.tokens.models import RefreshFamily
from idp.tokens.refresh import revoke_family
from idp.users.models import User
from idp.users.service import change_password

@dataclass(frozen=True)
class GrantedApp:
    """An application the user allowed, with the scopes granted."""

    client: Client
    scope: str


def sso_sessions(user_id: int) -> list[UserSession]:
    """The user's signed-in browser sessions, newest first."""
    return list(db.session.scalars(
        select(UserSession).where(UserSession.user_id == user_id, UserSession.kind == "sso").order_by(UserSession.created_at.desc(), UserSession.id.desc())
    ))


def end_own_session(user_id: int, sid: str) -> None:
    """Sign one of the user's own sessions out; raise NotFoundError for any other id."""
    row = db.session.scalar(select(UserSession).where(UserSession.sid == sid, UserSession.user_id == user_id, UserSession.kind == "sso"))
    if row is None:
        raise NotFoundError("no such session")
    end_session(row, reason="user_signed_out_session", actor=f"user:{user_id}")
    db.session.commit()


def granted_apps(user_id: int) -> list[GrantedApp]:
    """Applications with a remembered consent or a live refresh family for the user."""
    consents = {row.client_id: row.scope for row in db.session.scalars(select(Consent).where(Consent.user_id == user_id))}
    live = set(db.session.scalars(select(RefreshFamily.client_id).where(RefreshFamily.user_id == user_id, RefreshFamily.revoked_at.is_(None))))
    ids = set(consents) | live
    if not ids:
        return []
    clients = db.session.scalars(select(Client).where(Client.id.in_(ids)).order_by(Client.name))
    return [GrantedApp(client=client, scope=consents.get(client.id, "")) for client in clients]


def revoke_app(user_id: int, client_id: str, *, actor: str | None = None) -> int:
    """Withdraw a client's access: forget the consent and revoke every refresh family (offline too).

    `actor` is the user themselves unless an admin does it. Returns how many families were revoked.
    """
    actor = actor or f"user:{user_id}"
    client = db.session.scalar(select(Client).where(Client.client_id == client_id))
    if client is None:
        raise NotFoundError("no such application")
    db.session.execute(delete(Consent).where(Consent.user_id == user_id, Consent.client_id == client.id))
    families = list(db.session.scalars(select(RefreshFamily).where(
        RefreshFamily.user_id == user_id, RefreshFamily.client_id == client.id, RefreshFamily.revoked_at.is_(None)
    )))
    for family in families:
        revoke_family(family, reason="user_revoked_access" if actor == f"user:{user_id}" else "admin", actor=actor)
    record("consent.revoked", actor=actor, target=f"client:{client.client_id}", user=user_id, families=len(families))
    db.session.commit()
    return len(families)


def change_own_password(user: User, current: str, new: str, *, ip: str | None) -> int:
    """The user's own password change behind the password throttle.

    Returns 0 when changed; raises ValidationError when the current password is wrong; returns the
    seconds to wait when the throttle refused to check it (a stolen cookie is no password oracle).
    """
    def verify() -> bool:
        try:
            change_password(user, current, new, actor=f"user:{user.id}", ip=ip)
        except ValidationError as error:
            if error.field == "current_password":
                return False
            raise
        return True

    checked = throttled_check(f"user:{user.id}", ip, verify, form="password", actor=f"user:{user.id}")
    if checked.value is False:
        raise ValidationError("current password is wrong", field="current_password")
    return checked.retry_after
