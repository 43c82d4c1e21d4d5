"""A refresh racing a token-version bump or its family's revocation never yields a live token that
the bump or revocation should have killed: either the refresh is refused, or what it issued is denied."""

import threading
import time
from typing import Any, Callable

import pytest
from sqlalchemy import select

from idp.db import db
from idp.models import Client, RefreshFamily, RevokedAccessToken, User
from idp.tokens.access import issue_access_token
from idp.tokens.refresh import InvalidRefreshToken, pair_access_token, revoke_family, rotate, start_family
from idp.users.service import bump_token_version

from tests.conftest import POSTGRESQL_ONLY


@pytest.fixture
def family_token(app, make_user, make_client):
    user, (client, _) = make_user(), make_client()
    with app.app_context():
        rotation = start_family(client=db.session.get(Client, client.id), user=db.session.get(User, user.id), scope="openid offline_access", offline=True)
        db.session.commit()
        return user, client, rotation.token


def against_uncommitted(app, hold: Callable[[], Any], contender: Callable[[], Any]) -> Any:
    """Run `hold`'s writes (flushed, not committed) in one thread, then `contender` in another, and
    commit `hold` half a second after the contender started. The contender (its result, or the
    InvalidRefreshToken it raised) must have waited for that commit: row locks on PostgreSQL, the
    single write lock on SQLite."""
    written, started = threading.Event(), threading.Event()
    outcome: dict = {}

    def holder():
        with app.app_context():
            hold()
            db.session.flush()
            written.set()
            started.wait(10)
            time.sleep(0.5)  # the contender is now blocked on our uncommitted writes
            outcome["committing_at"] = time.monotonic()  # before: the woken contender may finish first
            db.session.commit()
            db.session.remove()

    def other():
        with app.app_context():
            written.wait(10)
            started.set()
            try:
                outcome["result"] = contender()
            except InvalidRefreshToken as error:
                outcome["result"] = error
            outcome["done_at"] = time.monotonic()
            db.session.remove()

    threads = [threading.Thread(target=holder), threading.Thread(target=other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcome["done_at"] >= outcome["committing_at"], "the contender did not wait for the uncommitted writes"
    return outcome["result"]


def refused_because(result) -> str | None:
    return result.reason if isinstance(result, InvalidRefreshToken) else None


def test_a_refresh_waiting_on_an_uncommitted_bump_sees_the_new_version(app, family_token):
    user, client, token = family_token
    result = against_uncommitted(
        app,
        hold=lambda: bump_token_version(db.session.get(User, user.id), reason="race", actor="test"),
        contender=lambda: rotate(token, client=db.session.get(Client, client.id)),
    )
    assert refused_because(result) == "outdated token version"
    with app.app_context():
        assert db.session.scalar(select(RefreshFamily)).revoked_reason == "token_version"


def test_a_refresh_waiting_on_an_uncommitted_revocation_is_refused(app, family_token):
    _, client, token = family_token
    result = against_uncommitted(
        app,
        hold=lambda: revoke_family(db.session.scalar(select(RefreshFamily)), reason="revoked", actor="test"),
        contender=lambda: rotate(token, client=db.session.get(Client, client.id)),
    )
    assert refused_because(result) == "family revoked"


def test_a_revocation_waiting_on_an_uncommitted_refresh_denies_the_access_token_it_issued(app, family_token):
    user, client, token = family_token
    issued = {}

    def refresh():
        rotation = rotate(token, client=db.session.get(Client, client.id))
        access = issue_access_token(client_id=client.client_id, subject=user.subject, scope="openid offline_access", token_version=user.token_version)
        pair_access_token(rotation, access)
        issued["jti"] = access.jti

    def revoke():
        revoke_family(db.session.scalar(select(RefreshFamily)), reason="revoked", actor="test")
        db.session.commit()

    against_uncommitted(app, hold=refresh, contender=revoke)
    with app.app_context():
        assert db.session.get(RevokedAccessToken, issued["jti"]) is not None


def test_a_bump_waiting_on_an_uncommitted_refresh_outdates_what_it_issued(app, family_token):
    user, client, token = family_token
    issued = {}

    def refresh():
        issued["token"] = rotate(token, client=db.session.get(Client, client.id)).token

    def bump():
        bump_token_version(db.session.get(User, user.id), reason="race", actor="test")
        db.session.commit()

    against_uncommitted(app, hold=refresh, contender=bump)
    with app.app_context():
        with pytest.raises(InvalidRefreshToken) as refused:
            rotate(issued["token"], client=db.session.get(Client, client.id))
        assert refused.value.reason == "outdated token version"


@POSTGRESQL_ONLY  # row locks are PostgreSQL's: SQLite orders writers with its one write lock
def test_a_refresh_in_flight_leaves_the_users_row_unlocked(app, family_token):
    """Rotations of many chains of one user must not queue on (or write MultiXacts into) its row."""
    user, client, token = family_token
    with app.app_context():
        assert db.engine.dialect.name == "postgresql"
        rotate(token, client=db.session.get(Client, client.id))  # uncommitted: its locks are held
        with db.engine.connect() as other:
            other.exec_driver_sql("SET lock_timeout = '2s'")
            locked = other.execute(select(User.id).where(User.id == user.id).with_for_update(nowait=True)).scalar()
            assert locked == user.id
            other.rollback()
        db.session.rollback()
