"""Remembered consent: which scopes a user granted to a client, so the page is shown once per scope set."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.clients.models import Client
from idp.clock import utcnow
from idp.db import db
from idp.oauth.models import Consent
from idp.users.models import User


def granted_scopes(user_id: int, client_id: int) -> set[str]:
    """The scopes this user has granted this client so far."""
    scope = db.session.scalar(select(Consent.scope).where(Consent.user_id == user_id, Consent.client_id == client_id))
    return set((scope or "").split())


def has_consent(user_id: int, client_id: int, scope: str) -> bool:
    """True when every requested scope was granted before (a new scope asks again)."""
    return set(scope.split()) <= granted_scopes(user_id, client_id)


def grant_consent(user: User, client: Client, scope: str) -> None:
    """Add `scope` to what the user granted the client, with an audit event."""
    for attempt in range(2):
        try:
            # A savepoint: losing the insert race undoes only this attempt, not the request's work.
            with db.session.begin_nested():
                row = db.session.scalar(select(Consent).where(Consent.user_id == user.id, Consent.client_id == client.id))
                if row is None:
                    row = Consent(user_id=user.id, client_id=client.id, scope="")
                    db.session.add(row)
                row.scope = " ".join(sorted(set(row.scope.split()) | set(scope.split())))
                row.granted_at = utcnow()
                record("consent.granted", actor=Actor.user(user.id), target=f"client:{client.client_id}", scope=scope)
            return
        except IntegrityError:
            # Another tab granted at the same moment and inserted the row first: merge into it.
            if attempt:
                raise
