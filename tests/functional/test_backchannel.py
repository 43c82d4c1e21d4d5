"""Back-channel logout delivered by a real Celery worker to a real HTTP receiver."""

import json
from typing import Callable

import pytest
from jwcrypto import jwk, jwt
from sqlalchemy import select

from idp.db import db
from idp.models import AuditEvent, Client, User, UserSession
from idp.oidc.backchannel import LOGOUT_EVENT
from idp.sessions.service import end_session, new_row
from idp.signout import sign_out_everywhere
from idp.tasks import outbox
from idp.tokens.refresh import start_family
from tests.support import Receiver, free_port, wait_until


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


def session_with_grant(app, user_id: int, client_id: int, offline: bool = False) -> str:
    with app.app_context():
        user = db.session.get(User, user_id)
        _, row = new_row(app, "sso", user)
        start_family(client=db.session.get(Client, client_id), user=user, scope="openid", sid=row.sid, offline=offline)
        db.session.commit()
        return row.sid


def verified_claims(app, token: str) -> dict:
    with app.app_context():
        keys = jwk.JWKSet.from_json(app.test_client().get("/.well-known/jwks.json").data)
    parsed = jwt.JWT(jwt=token, key=keys, algs=["RS256", "ES256"])
    assert json.loads(parsed.header)["typ"] == "logout+jwt"
    return json.loads(parsed.claims)


def test_one_worker_notifies_participating_clients_reaches_offline_grants_and_retries_a_receiver_that_is_down(
        app, celery_worker, receiver, make_user, make_client):
    """Three deliveries on one real worker (a worker's start and stop cost about 2 s): a receiver that
    is down, retried in the background while a session's logout and a sign-out everywhere arrive."""
    everywhere_receiver = Receiver()  # its own, so each scenario counts its own tokens
    try:
        attempts = a_receiver_that_is_down_does_not_block_the_logout(app, make_user, make_client)
        ending_a_session_notifies_participating_clients(app, receiver, make_user, make_client)
        sign_out_everywhere_reaches_offline_grants_too(app, everywhere_receiver, make_user, make_client)
        wait_until(lambda: attempts() >= 2, timeout=40, what="a failed delivery and its retry")
    finally:
        everywhere_receiver.close()


def ending_a_session_notifies_participating_clients(app, receiver, make_user, make_client):
    """One logout token, to the one client that took part in the session."""
    user = make_user()
    client, _ = make_client(backchannel_logout_uri=receiver.url)
    bystander, _ = make_client(name="Not in the session", backchannel_logout_uri=receiver.url)
    sid = session_with_grant(app, user.id, client.id)
    with app.app_context():
        end_session(db.session.scalar(select(UserSession).where(UserSession.sid == sid)), reason="logout")
        db.session.commit()
    wait_until(lambda: receiver.tokens, timeout=30, what="the logout token to arrive")
    claims = verified_claims(app, receiver.tokens[0])
    assert claims["iss"] == "http://localhost" and claims["aud"] == client.client_id
    assert claims["sid"] == sid and claims["sub"] == user.subject
    assert claims["events"] == {LOGOUT_EVENT: {}} and "nonce" not in claims and claims["jti"]
    assert len(receiver.tokens) == 1  # the bystander took no part in the session


def sign_out_everywhere_reaches_offline_grants_too(app, receiver, make_user, make_client):
    """A token per session and one for the offline grant (no sid)."""
    user = make_user()
    client, _ = make_client(backchannel_logout_uri=receiver.url)
    sid = session_with_grant(app, user.id, client.id)
    session_with_grant(app, user.id, client.id, offline=True)
    with app.app_context():
        sign_out_everywhere(db.session.get(User, user.id), actor="test")
    wait_until(lambda: len(receiver.tokens) >= 3, timeout=30, what="three logout tokens")
    claims = [verified_claims(app, token) for token in receiver.tokens]
    assert {c.get("sid") for c in claims} >= {sid, None}
    assert all(c["sub"] == user.subject for c in claims)


def a_receiver_that_is_down_does_not_block_the_logout(app, make_user, make_client) -> Callable[[], int]:
    """The session ends at once although its client's receiver is down; returns a count of the failed attempts."""
    down_port = free_port()  # nothing listens here
    user = make_user()
    client, _ = make_client(backchannel_logout_uri=f"http://127.0.0.1:{down_port}/bc")
    sid = session_with_grant(app, user.id, client.id)
    with app.app_context():
        end_session(db.session.scalar(select(UserSession).where(UserSession.sid == sid)), reason="logout")
        db.session.commit()
        assert db.session.scalar(select(UserSession).where(UserSession.sid == sid)) is None

    def attempts() -> int:
        with app.app_context():
            db.session.remove()
            return len(list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "backchannel_logout.failed"))))

    return attempts


def test_broker_down_does_not_break_sign_out(make_app, make_user, make_client, receiver):
    user = make_user()
    client, _ = make_client(backchannel_logout_uri=receiver.url)
    app = make_app(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    sid = session_with_grant(app, user.id, client.id)
    with app.app_context():
        sign_out_everywhere(db.session.get(User, user.id), actor="test")
        assert db.session.scalar(select(UserSession).where(UserSession.sid == sid)) is None
        assert db.session.get(User, user.id).token_version == 2
    wait_until(lambda: outbox._outage["down"], timeout=10, what="the nudge to find the broker down")
