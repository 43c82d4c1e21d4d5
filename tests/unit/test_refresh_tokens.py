"""Refresh families: rotation, reuse detection, grace window, expiry, and the concurrent race."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from idp.clock import utcnow
from idp.db import db
from idp.models import AuditEvent, Client, RefreshFamily, RefreshToken, RevokedAccessToken, User
from idp.security import digest
from idp.tokens.refresh import InvalidRefreshToken, start_family
from idp.tokens.refresh import rotate as rotate_in_transaction
from idp.users.service import bump_token_version
from tests.support import committing

# Each rotation here stands for one token request, which commits at its edge.
rotate = committing(rotate_in_transaction)


@pytest.fixture
def grant(app, make_user, make_client):
    user = make_user()
    client, _ = make_client()
    with app.app_context():
        rotation = start_family(client=db.session.get(Client, client.id), user=db.session.get(User, user.id), scope="openid offline_access", offline=True)
        db.session.commit()
        return user, client, rotation.token


def load_client(client) -> Client:
    return db.session.get(Client, client.id)


def test_token_is_stored_only_as_digest(app_ctx, grant):
    _, _, token = grant
    assert token.startswith("idp_rt_")
    row = db.session.scalar(select(RefreshToken))
    assert row.token_digest == digest(token)


def test_every_use_rotates(app_ctx, grant):
    _, client, token = grant
    second = rotate(token, client=load_client(client)).token
    assert second != token
    third = rotate(second, client=load_client(client)).token
    assert third not in (token, second)


def test_reusing_a_rotated_token_revokes_the_family(app_ctx, grant):
    _, client, token = grant
    successor = rotate(token, client=load_client(client)).token
    with pytest.raises(InvalidRefreshToken) as caught:
        rotate(token, client=load_client(client))
    assert caught.value.reason == "reused"
    family = db.session.scalar(select(RefreshFamily))
    assert family.revoked_reason == "reuse"
    with pytest.raises(InvalidRefreshToken, match="invalid refresh token"):
        rotate(successor, client=load_client(client))
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "refresh_token.reuse_detected")) == 1


def family_revoked_reason() -> str | None:
    db.session.remove()
    return db.session.scalar(select(RefreshFamily)).revoked_reason


def test_grace_window_redeems_the_just_rotated_token_in_place_of_its_unused_successor(app, grant):
    _, client, token = grant
    app.config["REFRESH_TOKEN_REUSE_GRACE"] = 30
    with app.app_context():
        lost = rotate(token, client=load_client(client)).token  # the relying party never stored this one
        again = rotate(token, client=load_client(client)).token
        third = rotate(token, client=load_client(client)).token  # any number of times within the window
        assert len({token, lost, again, third}) == 4
        assert family_revoked_reason() is None
        # Exactly one live token at any time: each redemption spent the unused successor before it.
        assert db.session.scalar(select(func.count()).select_from(RefreshToken).where(RefreshToken.rotated_at.is_(None))) == 1
        assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "refresh_token.grace_redeemed")) == 2
        fourth = rotate(third, client=load_client(client)).token  # the family moves on...
        with pytest.raises(InvalidRefreshToken, match="invalid refresh token"):
            rotate(token, client=load_client(client))  # ...so the old token is now a replay
        assert family_revoked_reason() == "reuse"
        with pytest.raises(InvalidRefreshToken):
            rotate(fourth, client=load_client(client))


def test_grace_window_a_superseded_successor_is_a_replay(app, grant):
    _, client, token = grant
    app.config["REFRESH_TOKEN_REUSE_GRACE"] = 30
    with app.app_context():
        superseded = rotate(token, client=load_client(client)).token
        current = rotate(token, client=load_client(client)).token
        with pytest.raises(InvalidRefreshToken):
            rotate(superseded, client=load_client(client))
        assert family_revoked_reason() == "reuse"
        with pytest.raises(InvalidRefreshToken):
            rotate(current, client=load_client(client))


def test_grace_window_is_fixed_from_the_first_rotation(app, grant):
    _, client, token = grant
    app.config["REFRESH_TOKEN_REUSE_GRACE"] = 30
    start = utcnow()
    with app.app_context():
        rotate(token, client=load_client(client), now=start)
        rotate(token, client=load_client(client), now=start + timedelta(seconds=20))  # does not extend the window
        with pytest.raises(InvalidRefreshToken):
            rotate(token, client=load_client(client), now=start + timedelta(seconds=31))
        assert family_revoked_reason() == "reuse"


def test_other_client_unknown_and_expired_tokens_are_refused(app_ctx, grant, make_client):
    _, client, token = grant
    other, _ = make_client(name="Other")
    for value, kwargs, reason in (
        (token, {"client": load_client(other)}, "wrong client"),
        ("idp_rt_unknown", {"client": load_client(client)}, "unknown"),
        ("", {"client": load_client(client)}, "malformed"),
        (token, {"client": load_client(client), "now": utcnow() + timedelta(days=15)}, "expired"),
    ):
        with pytest.raises(InvalidRefreshToken) as caught:
            rotate(value, **kwargs)
        assert caught.value.reason == reason
    assert db.session.scalar(select(RefreshFamily)).revoked_at is None


def test_token_version_bump_kills_the_family(app_ctx, grant):
    user, client, token = grant
    bump_token_version(db.session.get(User, user.id), reason="test", actor="test")
    db.session.commit()
    with pytest.raises(InvalidRefreshToken) as caught:
        rotate(token, client=load_client(client))
    assert caught.value.reason == "outdated token version"
    assert db.session.scalar(select(RefreshFamily)).revoked_reason == "token_version"


def test_concurrent_refreshes_of_one_token_yield_at_most_one_success(app, grant):
    _, client, token = grant
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt():
        with app.app_context():
            barrier.wait()
            try:
                rotate(token, client=load_client(client))
                outcomes.append("ok")
            except InvalidRefreshToken as error:
                outcomes.append(error.reason)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 1, outcomes
    assert len(outcomes) == 8
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RefreshToken).where(RefreshToken.rotated_at.is_(None))) <= 1


def test_revoking_a_users_families_denies_the_live_access_tokens_of_each(app_ctx, make_user, make_client, monkeypatch):
    """One query per batch of families (a small batch here, to cross its edge), expired pairings skipped."""
    from idp.tokens import refresh
    from idp.tokens.access import issue_access_token

    monkeypatch.setattr(refresh, "DENY_BATCH", 2)
    (user, other), (client, _) = (make_user(), make_user()), make_client()

    def grant_with_access(owner, *, expired: bool = False) -> str:
        rotation = start_family(client=load_client(client), user=db.session.get(User, owner.id), scope="openid offline_access", offline=True)
        issued_at = utcnow() - timedelta(hours=1) if expired else None
        access = issue_access_token(client_id=client.client_id, subject=owner.subject, scope="openid", token_version=owner.token_version, now=issued_at)
        refresh.pair_access_token(rotation, access)
        return access.jti

    live = {grant_with_access(user) for _ in range(5)}
    grant_with_access(user, expired=True)
    grant_with_access(other)
    db.session.commit()
    assert refresh.revoke_families(user_id=user.id, include_offline=True, reason="test", actor="test") == 6
    db.session.commit()
    assert set(db.session.scalars(select(RevokedAccessToken.jti))) == live  # not the expired one, not the other user's
