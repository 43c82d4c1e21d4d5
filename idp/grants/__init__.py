"""What a user granted each client: remembered consents and refresh families, listed and withdrawn together.

The account page and the admin UI both show and revoke grants through here, so "revoke an
application" means the same everywhere: the consent is forgotten and every live refresh family of
that (user, client) pair is revoked, offline ones included, in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select

from idp.audit.service import record
from idp.clients.models import Client
from idp.db import db
from idp.errors import NotFoundError
from idp.oauth.models import Consent
from idp.tokens.models import RefreshFamily
from idp.tokens.refresh import revoke_family


@dataclass(frozen=True)
class GrantedApp:
    """An application the user allowed, with the scopes granted."""

    client: Client
    scope: str


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
    return len(families)
