"""A refresh racing the sign-out that ends its session: either the refresh is refused, or the sign-out
denies what it issued (the same guarantee as for a token-version bump or a family revocation)."""

import pytest
from sqlalchemy import select

from idp.db import db
from idp.models import Client, RefreshFamily, RevokedAccessToken, User, UserSession
from idp.sessions.store import end_session, new_row
from idp.tokens.access import issue_access_token
from idp.tokens.refresh import pair_access_token, rotate, start_family
from tests.unit.test_refresh_races import against_uncommitted, refused_because


@pytest.fixture
def session_family(app, make_user, make_client):
    """A session-bound (not offline) family of an SSO session."""
    user, (client, _) = make_user(), make_client()
    with app.app_context():
        _, row = new_row(app, "sso", db.session.get(User, user.id))
        rotation = start_family(client=db.session.get(Client, client.id), user=db.session.get(User, user.id), scope="openid", sid=row.sid)
        db.session.commit()
        return user, client, row.sid, rotation.token


def sign_out(sid: str) -> None:
    end_session(db.session.scalar(select(UserSession).where(UserSession.sid == sid)), reason="logout")


def test_a_refresh_waiting_on_an_uncommitted_sign_out_is_refused(app, session_family):
    _, client, sid, token = session_family
    result = against_uncommitted(app, hold=lambda: sign_out(sid), contender=lambda: rotate(token, client=db.session.get(Client, client.id)))
    assert refused_because(result) == "family revoked"
    with app.app_context():
        assert db.session.scalar(select(RefreshFamily)).revoked_reason == "session_ended"


def test_a_sign_out_waiting_on_an_uncommitted_refresh_denies_the_access_token_it_issued(app, session_family):
    user, client, sid, token = session_family
    issued = {}

    def refresh():
        rotation = rotate(token, client=db.session.get(Client, client.id))
        access = issue_access_token(client_id=client.client_id, subject=user.subject, scope="openid", token_version=user.token_version)
        pair_access_token(rotation, access)
        issued["jti"] = access.jti

    def contender():
        sign_out(sid)
        db.session.commit()

    against_uncommitted(app, hold=refresh, contender=contender)
    with app.app_context():
        assert db.session.get(RevokedAccessToken, issued["jti"]) is not None
        assert db.session.scalar(select(RefreshFamily)).revoked_at is not None
