"""A refresh racing a token-version bump never yields a token carrying the old version after the bump."""

import threading
import time

import pytest
from sqlalchemy import select

from idp.db import db
from idp.models import Client, RefreshFamily, User
from idp.tokens.refresh import InvalidRefreshToken, rotate, start_family
from idp.users.service import bump_token_version


@pytest.fixture
def family_token(app, make_user, make_client):
    user, (client, _) = make_user(), make_client()
    with app.app_context():
        rotation = start_family(client=db.session.get(Client, client.id), user=db.session.get(User, user.id), scope="openid offline_access", offline=True)
        db.session.commit()
        return user, client, rotation.token


def test_refresh_that_waits_on_an_uncommitted_bump_sees_the_new_version(app, family_token):
    """The bump holds its write (row lock on PostgreSQL, the write lock on SQLite) while the refresh
    starts; once the bump commits, the refresh must refuse rather than issue under version 1."""
    user, client, token = family_token
    bumped, refresh_started = threading.Event(), threading.Event()
    outcome: dict = {}

    def bump():
        with app.app_context():
            bump_token_version(db.session.get(User, user.id), reason="race", actor="test")  # flushed, not committed
            bumped.set()
            refresh_started.wait(10)
            time.sleep(0.5)  # the refresh is now blocked on our uncommitted write
            db.session.commit()
            outcome["bump_committed_at"] = time.monotonic()
            db.session.remove()

    def refresh():
        with app.app_context():
            bumped.wait(10)
            refresh_started.set()
            try:
                rotate(token, client=db.session.get(Client, client.id))
                outcome["refresh"] = "issued"
            except InvalidRefreshToken as error:
                outcome["refresh"] = error.reason
            outcome["refresh_done_at"] = time.monotonic()
            db.session.remove()

    threads = [threading.Thread(target=bump), threading.Thread(target=refresh)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcome["refresh_done_at"] >= outcome["bump_committed_at"]  # it really waited for the bump
    assert outcome["refresh"] == "outdated token version"
    with app.app_context():
        assert db.session.scalar(select(RefreshFamily)).revoked_reason == "token_version"
