"""OpenID Connect Back-Channel Logout 1.0: tell relying parties when a session ends.

When an SSO session ends (logout, timeout, admin revoke, sign-out-everywhere), every client that
took part in it and registered a `backchannel_logout_uri` gets a signed `logout+jwt`. Each delivery
is an outbox message written in the transaction that ends the session (idp/tasks/outbox.py), so it
survives a broker outage and a dying process, and is retried with backoff by the worker. A receiver
that is down delays nobody: the sign-out has already happened in our database.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import requests
from celery import shared_task
from flask import current_app
from sqlalchemy import select, union

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.clients.models import Client
from idp.clock import utcnow
from idp.db import db
from idp.keyring import jws
from idp.oauth.models import AuthorizationCode
from idp.security import random_token
from idp.sessions.models import SessionKind
from idp.sessions.store import session_ended
from idp.signout import signed_out_everywhere
from idp.tasks import outbox
from idp.tokens.models import RefreshFamily
from idp.users.models import User

log = logging.getLogger(__name__)

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TTL = timedelta(minutes=2)
DELIVERY_TIMEOUT_SECONDS = 5
KIND = "backchannel_logout"
LEGACY_TASK_NAME = "idp.backchannel_logout"  # what releases before the outbox published
MAX_ATTEMPTS = 7  # 5 s, 10 s, 20 s ... 160 s apart: about five minutes of a receiver being down


def logout_token(client: Client, *, sub: str | None, sid: str | None) -> str:
    """A signed Logout Token (section 2.4): iss, aud, iat, exp, jti, events, and sub and/or sid; never a nonce."""
    now = utcnow()
    claims = {
        "iss": current_app.config["ISSUER"],
        "aud": client.client_id,
        "iat": int(now.timestamp()),
        "exp": int((now + LOGOUT_TOKEN_TTL).timestamp()),
        "jti": random_token(16),
        "events": {LOGOUT_EVENT: {}},
    }
    if sub:
        claims["sub"] = sub
    if sid:
        claims["sid"] = sid
    # Section 2.4 recommends explicit typing so a logout token is never mistaken for an ID token.
    return jws.sign(claims, jws.LOGOUT_TOKEN_TYP, client.id_token_signed_response_alg)


def backchannel_metadata(issuer: str) -> dict[str, bool]:
    """Discovery members of section 2.1: logout tokens are sent, and they carry `sid` (omitted means false)."""
    return {"backchannel_logout_supported": True, "backchannel_logout_session_supported": True}


def participating_clients(sids: list[str]) -> list[Client]:
    """Clients with a back-channel URI that got a code or a refresh family in one of these sessions."""
    if not sids:
        return []
    client_ids = union(
        select(RefreshFamily.client_id).where(RefreshFamily.sid.in_(sids)),
        select(AuthorizationCode.client_id).where(AuthorizationCode.sid.in_(sids)),
    ).subquery()
    return list(db.session.scalars(
        select(Client).where(Client.id.in_(select(client_ids.c.client_id)), Client.backchannel_logout_uri.is_not(None))
    ))


def connect() -> None:
    """Queue logout tokens whenever SSO sessions end or a user is signed out everywhere, and deliver them (wired by the app factory)."""
    session_ended.connect(_queue_backchannel_logout)
    signed_out_everywhere.connect(_queue_offline_logout)
    outbox.handler(KIND, max_attempts=MAX_ATTEMPTS, retry_base=lambda config: config["BACKCHANNEL_RETRY_BASE_SECONDS"])(deliver_backchannel_logout)


def _queue_backchannel_logout(sender, rows, reason: str, **extra) -> None:
    """One outbox message per (client, session) of the ended SSO sessions, in their transaction."""
    for row in rows:
        if row.kind != SessionKind.SSO or row.user_id is None:
            continue
        subject = db.session.scalar(select(User.subject).where(User.id == row.user_id))
        for client in participating_clients([row.sid]):
            outbox.add(KIND, client_id=client.client_id, sub=subject, sid=row.sid, reason=reason)


def _queue_offline_logout(sender, user: User, **extra) -> None:
    """After sign-out-everywhere: a sub-only logout token to clients holding offline grants of `user`."""
    clients = db.session.scalars(
        select(Client).where(
            Client.id.in_(select(RefreshFamily.client_id).where(RefreshFamily.user_id == user.id, RefreshFamily.offline.is_(True))),
            Client.backchannel_logout_uri.is_not(None),
        )
    )
    for client in clients:
        outbox.add(KIND, client_id=client.client_id, sub=user.subject, sid=None, reason="sign_out_everywhere")


def deliver_backchannel_logout(payload: dict, *, attempt: int, final: bool) -> bool:
    """POST a fresh logout token to the client's back-channel URI (section 2.5); True once it answered 2xx."""
    client_id, sid = payload["client_id"], payload.get("sid")
    client = db.session.scalar(select(Client).where(Client.client_id == client_id))
    if client is None or not client.backchannel_logout_uri:
        return True  # the client is gone or no longer listens: nothing left to deliver
    try:
        response = requests.post(
            client.backchannel_logout_uri,
            data={"logout_token": logout_token(client, sub=payload.get("sub"), sid=sid)},
            timeout=DELIVERY_TIMEOUT_SECONDS,
            allow_redirects=False,  # section 2.5: the RP answers directly; never follow elsewhere
        )
        status, detail = response.status_code, f"HTTP {response.status_code}"
    except requests.RequestException as error:
        status, detail = None, type(error).__name__
    if status is not None and 200 <= status < 300:
        record("backchannel_logout.delivered", actor=Actor.SYSTEM, target=f"client:{client_id}", sid=sid, status=status, attempt=attempt)
        return True
    record("backchannel_logout.failed", actor=Actor.SYSTEM, target=f"client:{client_id}", sid=sid, detail=detail, attempt=attempt, final=final)
    return False


@shared_task(name=LEGACY_TASK_NAME)
def adopt_legacy_message(client_id: str, sub: str | None, sid: str | None, reason: str = "") -> None:
    """A delivery queued by a release before the outbox (a rolling upgrade): move it into the outbox."""
    outbox.add(KIND, client_id=client_id, sub=sub, sid=sid, reason=reason)
