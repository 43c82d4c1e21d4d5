"""Purge: every kind of expired row goes, in batches; every live row stays; reruns find nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from idp.audit.models import AuditEvent
from idp.clock import utcnow
from idp.db import db
from idp.jobs.models import JobRun
from idp.oauth.models import AuthorizationCode
from idp.purge import purge_expired
from idp.security import digest, random_token
from idp.sessions.models import UserSession
from idp.sessions.service import session_ended
from idp.tasks.models import OutboxMessage
from idp.tokens.models import RefreshFamily, RefreshToken, RevokedAccessToken

SKEW = timedelta(seconds=60)  # CLOCK_SKEW of the test configuration
S = timedelta(seconds=1)
ZERO = {"authorization_codes": 0, "refresh_tokens": 0, "refresh_families": 0, "revoked_access_tokens": 0,
        "sessions": 0, "audit_events": 0, "job_runs": 0, "outbox_messages": 0, "login_throttles": 0,
        "one_time_links": 0}


@pytest.fixture
def config(config):
    return {**config, "PURGE_BATCH_SIZE": 3, "AUDIT_RETENTION": 30 * 86400, "JOB_RUN_RETENTION": 7 * 86400}


@pytest.fixture
def owner(make_user, make_client):
    """A user and a client for rows that need them."""
    return make_user(), make_client()[0]


@pytest.fixture
def now():
    return utcnow()




def code(owner, expires_at, used=False) -> AuthorizationCode:
    user, client = owner
    row = AuthorizationCode(code_digest=digest(random_token()), client_id=client.id, user_id=user.id, redirect_uri="http://127.0.0.1:9999/callback",
                            expires_at=expires_at, created_at=expires_at - timedelta(minutes=10), used_at=expires_at if used else None)
    db.session.add(row)
    return row


def family(owner, *, expires_at, created_at, revoked=False) -> RefreshFamily:
    user, client = owner
    row = RefreshFamily(client_id=client.id, user_id=user.id, expires_at=expires_at, created_at=created_at,
                        revoked_at=created_at if revoked else None, revoked_reason="reuse" if revoked else None)
    db.session.add(row)
    db.session.flush()
    return row


def token(fam: RefreshFamily, expires_at, rotated=False) -> RefreshToken:
    row = RefreshToken(family_id=fam.id, token_digest=digest(random_token()), expires_at=expires_at,
                       created_at=fam.created_at, rotated_at=fam.created_at if rotated else None)
    db.session.add(row)
    return row


def session_row(owner, *, kind="sso", expires_at, last_seen_at) -> UserSession:
    user, _ = owner
    row = UserSession(id_digest=digest(random_token()), sid=random_token(16), kind=kind, user_id=user.id, token_version=user.token_version,
                      data={}, created_at=last_seen_at - timedelta(hours=1), last_seen_at=last_seen_at, expires_at=expires_at)
    db.session.add(row)
    return row


def ids(rows) -> list[int]:
    """Primary keys, read while the rows still exist."""
    return [row.id for row in rows]


def remaining(model, ids) -> set:
    key = model.__mapper__.primary_key[0]
    return set(db.session.scalars(select(key).where(key.in_(ids))))


def test_authorization_codes_go_once_past_expiry_plus_skew(app_ctx, owner, now):
    dead = [code(owner, now - SKEW - S, used=True), code(owner, now - SKEW - S), code(owner, now - timedelta(hours=2))]
    dead += [code(owner, now - SKEW - timedelta(minutes=m)) for m in range(1, 4)]
    live = [code(owner, now - SKEW + S), code(owner, now + timedelta(minutes=5))]
    db.session.commit()
    dead_ids, live_ids = ids(dead), ids(live)
    counts = purge_expired(now=now)
    assert counts["authorization_codes"] == len(dead) == 6  # two batches of 3
    assert remaining(AuthorizationCode, dead_ids + live_ids) == set(live_ids)


def test_refresh_tokens_and_families(app_ctx, owner, now):
    long_ago = now - timedelta(days=30)
    # A live family: one expired (rotated) token goes, the current one stays, so does the family.
    active = family(owner, expires_at=now + timedelta(days=60), created_at=long_ago)
    active_old, active_current = token(active, now - SKEW - S, rotated=True), token(active, now + timedelta(days=1))
    # Every token idle-expired: tokens and family go.
    idle = family(owner, expires_at=now + timedelta(days=60), created_at=long_ago)
    idle_tokens = [token(idle, now - timedelta(days=d)) for d in (1, 2, 3, 4)]
    # Revoked after reuse, but its tokens have not expired: presenting one must still be refused as
    # reuse, so it all stays.
    revoked = family(owner, expires_at=now + timedelta(days=60), created_at=long_ago, revoked=True)
    revoked_token = token(revoked, now + timedelta(days=2), rotated=True)
    # Past its absolute lifetime: goes with its tokens, even those not idle-expired.
    ended = family(owner, expires_at=now - SKEW - S, created_at=long_ago)
    ended_tokens = [token(ended, now + timedelta(days=3)) for _ in range(4)]
    # Just created, first token not written yet: stays.
    fresh = family(owner, expires_at=now + timedelta(days=90), created_at=now)
    db.session.commit()
    families = dict(zip(("active", "idle", "revoked", "ended", "fresh"), ids([active, idle, revoked, ended, fresh])))
    every_token = ids([active_old, active_current, revoked_token, *idle_tokens, *ended_tokens])
    kept_tokens = set(ids([active_current, revoked_token]))

    counts = purge_expired(now=now)
    assert counts["refresh_tokens"] == 1 + 4 + 4
    assert counts["refresh_families"] == 2
    assert remaining(RefreshFamily, families.values()) == {families["active"], families["revoked"], families["fresh"]}
    assert remaining(RefreshToken, every_token) == kept_tokens
    # Families go once their last token has expired, revoked or not.
    later = now + timedelta(days=2) + SKEW + S
    assert purge_expired(now=later)["refresh_families"] == 2
    assert remaining(RefreshFamily, families.values()) == {families["fresh"]}


def test_denylist_entries_stay_until_their_token_expired_plus_skew(app_ctx, now):
    rows = {jti: RevokedAccessToken(jti=jti, expires_at=at) for jti, at in
            [("dead1", now - SKEW - S), ("dead2", now - timedelta(hours=1)), ("live1", now - SKEW + S), ("live2", now + timedelta(minutes=5))]}
    db.session.add_all(rows.values())
    db.session.commit()
    assert purge_expired(now=now)["revoked_access_tokens"] == 2
    assert set(db.session.scalars(select(RevokedAccessToken.jti))) == {"live1", "live2"}


def test_sessions_past_absolute_or_idle_expiry_are_ended(app, app_ctx, owner, now):
    idle_sso, idle_admin = timedelta(seconds=app.config["SSO_SESSION_IDLE_TTL"]), timedelta(seconds=app.config["ADMIN_SESSION_IDLE_TTL"])
    far = now + timedelta(days=3)
    dead = [
        session_row(owner, expires_at=now - SKEW - S, last_seen_at=now - timedelta(minutes=1)),
        session_row(owner, expires_at=far, last_seen_at=now - SKEW - idle_sso - S),
        session_row(owner, kind="admin", expires_at=far, last_seen_at=now - SKEW - idle_admin - S),
    ]
    live = [
        session_row(owner, expires_at=now - SKEW + S, last_seen_at=now - timedelta(minutes=1)),
        session_row(owner, expires_at=far, last_seen_at=now - SKEW - idle_sso + S),
        # An admin session idle for longer than the admin limit would be dead; this one is not.
        session_row(owner, kind="admin", expires_at=far, last_seen_at=now - SKEW - idle_admin + S),
        # Idle for longer than the admin limit but it is an SSO session.
        session_row(owner, expires_at=far, last_seen_at=now - SKEW - idle_admin - S),
    ]
    db.session.commit()
    dead_sids, live_sids = {row.sid for row in dead}, {row.sid for row in live}
    signalled = []

    def receiver(sender, rows, reason):
        signalled.extend((row.sid, reason) for row in rows)

    session_ended.connect(receiver)
    try:
        assert purge_expired(now=now)["sessions"] == 3
    finally:
        session_ended.disconnect(receiver)
    assert set(db.session.scalars(select(UserSession.sid))) == live_sids
    assert sorted(signalled) == sorted((sid, "expired") for sid in dead_sids)
    ended = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "session.ended")).all()
    assert {event.target for event in ended} == {f"session:{sid}" for sid in dead_sids}


def test_audit_events_past_retention_go_and_zero_keeps_them(app, app_ctx, now):
    retention = timedelta(days=30)
    old = [AuditEvent(action="test.old", actor="system", occurred_at=now - retention - timedelta(minutes=m), details={}) for m in range(1, 5)]
    kept = [AuditEvent(action="test.kept", actor="system", occurred_at=now - retention + timedelta(minutes=1), details={})]
    db.session.add_all(old + kept)
    db.session.commit()
    app.config["AUDIT_RETENTION"] = 0
    assert purge_expired(now=now)["audit_events"] == 0
    app.config["AUDIT_RETENTION"] = int(retention.total_seconds())
    assert purge_expired(now=now)["audit_events"] == 4
    assert set(db.session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("test.%")))) == {"test.kept"}
    # The purge leaves its own trace.
    purged = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "data.purged")).all()
    assert [event.details["audit_events"] for event in purged] == [4]


def test_old_job_runs_go_but_the_last_of_each_job_and_running_ones_stay(app_ctx, now):
    week = timedelta(days=7)

    def run(job, age, outcome="succeeded"):
        row = JobRun(job=job, started_at=now - age, finished_at=now - age, outcome=outcome, counts={})
        db.session.add(row)
        db.session.flush()
        return row

    [run("purge", week + timedelta(hours=h)) for h in (5, 4, 3)]
    recent_purge = run("purge", timedelta(hours=1))
    lonely = run("rotate_keys", week + timedelta(days=30))  # the only run of its job: stays
    stuck = run("other", week + timedelta(days=1), outcome="running")
    last_other = run("other", week + timedelta(hours=1), outcome="failed")
    db.session.commit()
    kept = set(ids([recent_purge, lonely, stuck, last_other]))
    assert purge_expired(now=now)["job_runs"] == 3
    assert set(db.session.scalars(select(JobRun.id))) == kept


def test_handled_outbox_messages_go_after_their_retention_undone_ones_never(app_ctx, now):
    week = timedelta(days=7)  # OUTBOX_RETENTION's default

    def message(age, done):
        row = OutboxMessage(kind="backchannel_logout", payload={}, created_at=now - age, due_at=now - age, attempts=1,
                            done_at=now - age if done else None, outcome="delivered" if done else None)
        db.session.add(row)
        return row

    old_done, recent_done, old_pending = message(week + timedelta(hours=1), True), message(week - timedelta(hours=1), True), message(week * 4, False)
    db.session.commit()
    kept = {recent_done.id, old_pending.id}
    assert old_done.id not in kept
    assert purge_expired(now=now)["outbox_messages"] == 1
    assert set(db.session.scalars(select(OutboxMessage.id))) == kept


def test_purge_is_idempotent_and_quiet_when_nothing_is_due(app_ctx, owner, now):
    code(owner, now - timedelta(hours=1))
    db.session.commit()
    assert purge_expired(now=now)["authorization_codes"] == 1
    events = db.session.scalar(select(func.count()).select_from(AuditEvent))
    assert purge_expired(now=now) == ZERO
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == events  # no audit event for nothing


def test_throttle_buckets_go_once_quiet_unless_they_remember_a_known_address(app, app_ctx, now):
    from idp.auth.models import LoginThrottle

    at = int(now.timestamp())
    quiet, known = at - app.config["LOGIN_THROTTLE_WINDOW"] - 1, at - app.config["LOGIN_THROTTLE_KNOWN_IP_TTL"]

    def bucket(key, *, last_failure_at=0, blocked_until=0, last_success_at=0):
        db.session.add(LoginThrottle(key=key, kind="account_ip", account="user:1", ip="192.0.2.1", failures=3, backoff=0,
                                     blocked_until=blocked_until, last_failure_at=last_failure_at, last_success_at=last_success_at))

    bucket("quiet", last_failure_at=quiet)
    bucket("known-long-ago", last_failure_at=quiet, last_success_at=known - 1)
    bucket("recent-failure", last_failure_at=at - 5)
    bucket("backed-off", last_failure_at=quiet, blocked_until=at + 60)
    bucket("known", last_failure_at=quiet, last_success_at=known + 60)
    db.session.commit()
    assert purge_expired(now=now)["login_throttles"] == 2
    assert set(db.session.scalars(db.select(LoginThrottle.key))) == {"recent-failure", "backed-off", "known"}


def test_one_time_links_go_once_past_their_expiry_spent_or_not(app_ctx, owner, now):
    from idp.onboarding.models import OneTimeLink

    user, _ = owner

    def link(name, expires_at, used=False):
        db.session.add(OneTimeLink(kind="reset", digest=digest(name), user_id=user.id, email=user.email, created_at=expires_at - timedelta(hours=1),
                                   expires_at=expires_at, used_at=expires_at - timedelta(minutes=5) if used else None))

    for n in range(4):  # more than a batch (3)
        link(f"expired-{n}", now - SKEW - timedelta(minutes=n + 1))
    link("expired-spent", now - SKEW - S, used=True)
    link("within-skew", now - SKEW + S)
    link("open", now + timedelta(hours=1))
    link("spent-but-not-expired", now + timedelta(hours=1), used=True)
    db.session.commit()
    assert purge_expired(now=now)["one_time_links"] == 5
    assert set(db.session.scalars(select(OneTimeLink.digest))) == {digest(name) for name in ("within-skew", "open", "spent-but-not-expired")}
    assert purge_expired(now=now)["one_time_links"] == 0
