"""The rotation state machine, driven by a clock: next -> active -> retired -> purged, by schedule and by hand."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.exc import IntegrityError

from idp.audit.models import AuditEvent
from idp.db import db
from idp.errors import NotFoundError, ValidationError
from idp.keyring import rotation
from idp.keyring import service as keyring
from idp.keyring.models import KeyState, SigningKey
from idp.keyring.rotation import RotationConflict, revoke_key, rotate_now, run_rotation
from tests.keys.conftest import CACHE, GRACE, LEAD, PERIOD, keys_by_state, published_kids, sign_token

SECOND = timedelta(seconds=1)


def actions(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def assert_invariants(now) -> None:
    """One active and at most one next key per algorithm; the active key was published long enough."""
    for alg in keyring.ALGORITHMS:
        states = keys_by_state(alg)
        assert len(states["active"]) == 1, (alg, states)
        assert len(states["next"]) <= 1, (alg, states)
        active = db.session.scalar(select(SigningKey).where(SigningKey.kid == states["active"][0]))
        assert active.kid in published_kids()


def key_history() -> list[str]:
    """Every key and every key.* audit event, oldest first: who wrote what, for a failure's message."""
    keys = [f"{key.kid[:8]} {key.alg} {key.state.value} created {key.created_at} activated {key.activated_at}"
            for key in db.session.scalars(select(SigningKey).order_by(SigningKey.id))]
    events = [f"{event.occurred_at} {event.action} by {event.actor} on {(event.target or '')[:12]}"
              for event in db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("key.%")).order_by(AuditEvent.id))]
    return keys + events


def test_nothing_happens_before_the_period_and_reruns_change_nothing(app_ctx, t0):
    before = {alg: keys_by_state(alg) for alg in keyring.ALGORITHMS}
    history = key_history()
    # Each active key's period runs from its own activation. t0 is the newest key's birth, which on a
    # loaded machine comes seconds after the first active key's (an RSA key takes that long to make).
    first_due = min(db.session.scalars(select(SigningKey.activated_at).where(SigningKey.state == KeyState.ACTIVE))) + PERIOD
    for now in (t0, first_due - SECOND, first_due - SECOND):
        counts = run_rotation(now=now)
        assert counts == {"created": 0, "activated": 0, "retired": 0, "purged": 0, "waiting": 0, "conflicts": 0}, (
            now, history)
    assert {alg: keys_by_state(alg) for alg in keyring.ALGORITHMS} == before


def test_scheduled_rotation_promotes_next_retires_active_and_publishes_a_new_next(app_ctx, t0):
    before = {alg: keys_by_state(alg) for alg in keyring.ALGORITHMS}
    now = t0 + PERIOD
    assert run_rotation(now=now) == {"created": 2, "activated": 2, "retired": 2, "purged": 0, "waiting": 0, "conflicts": 0}
    for alg in keyring.ALGORITHMS:
        after = keys_by_state(alg)
        assert after["active"] == before[alg]["next"]
        assert after["retired"] == before[alg]["active"]
        assert len(after["next"]) == 1 and after["next"] != before[alg]["next"]
        assert keyring.signing_key(alg)[0] == after["active"][0]
    assert len(published_kids()) == 6  # next, active and retired for each algorithm
    assert_invariants(now)
    # Idempotent: the same tick again, or a little later, changes nothing.
    snapshot = keys_by_state()
    assert run_rotation(now=now)["activated"] == 0
    assert run_rotation(now=now + SECOND)["activated"] == 0
    assert keys_by_state() == snapshot
    assert [e.target for e in actions("key.activated")] == [f"key:{kid}" for alg in ("RS256", "ES256") for kid in before[alg]["next"]]
    assert all(e.details["lead_time_met"] and e.details["reason"] == "scheduled" for e in actions("key.activated"))
    assert len(actions("key.retired")) == 2


def test_retired_key_stays_published_through_the_grace_then_is_purged(app_ctx, t0):
    rotated_at = t0 + PERIOD
    old = {alg: keys_by_state(alg)["active"][0] for alg in keyring.ALGORITHMS}
    run_rotation(now=rotated_at)
    last_moment = rotated_at + GRACE + CACHE - SECOND
    assert run_rotation(now=last_moment)["purged"] == 0
    assert set(old.values()) <= published_kids()
    assert run_rotation(now=last_moment + SECOND)["purged"] == 2
    assert not set(old.values()) & published_kids()
    assert db.session.scalar(select(func.count()).select_from(SigningKey).where(SigningKey.kid.in_(old.values()))) == 0
    assert {e.target for e in actions("key.purged")} == {f"key:{kid}" for kid in old.values()}
    assert run_rotation(now=last_moment + SECOND)["purged"] == 0


def test_tokens_signed_before_a_rotation_verify_until_they_expire_and_not_after_the_purge(app_ctx, t0):
    rotated_at = t0 + PERIOD
    # The longest-lived token the old key can sign: an ID token kept as a logout hint, issued at the
    # last moment another process could still sign with the old key (its cache is 5 s old).
    token = sign_token("RS256", issued_at=rotated_at + CACHE, lifetime=7200)
    run_rotation(now=rotated_at)
    moment = rotated_at
    while moment < token["exp"] + timedelta(seconds=60):  # exp plus the verifiers' clock skew
        run_rotation(now=moment)
        assert token["kid"] in published_kids(), f"key purged at {moment} while its token lives until {token['exp']}"
        moment += timedelta(minutes=7)
    run_rotation(now=token["exp"] + GRACE)
    assert token["kid"] not in published_kids()


def test_a_next_key_too_new_to_be_cached_by_relying_parties_waits(app_ctx, t0):
    # The next key was replaced ten minutes before rotation is due: it is too new to sign.
    replaced_at = t0 + PERIOD - timedelta(minutes=10)
    revoke_key(keys_by_state("ES256")["next"][0], actor="test", now=replaced_at)
    young = keys_by_state("ES256")["next"][0]
    counts = run_rotation(now=t0 + PERIOD)
    assert counts["waiting"] == 1 and counts["activated"] == 1  # RS256 rotated, ES256 waits
    assert keys_by_state("ES256")["next"] == [young]
    assert run_rotation(now=replaced_at + LEAD - SECOND)["activated"] == 0
    assert run_rotation(now=replaced_at + LEAD)["activated"] == 1
    assert keys_by_state("ES256")["active"] == [young]


def test_an_algorithm_without_an_active_key_is_repaired_at_once(app_ctx, t0):
    db.session.execute(update(SigningKey).where(SigningKey.alg == "RS256", SigningKey.state == KeyState.ACTIVE).values(state=KeyState.REVOKED, revoked_at=t0))
    db.session.execute(SigningKey.__table__.delete().where(SigningKey.alg == "ES256"))
    db.session.commit()
    next_rs = keys_by_state("RS256")["next"]
    counts = run_rotation(now=t0 + SECOND)
    assert counts["activated"] == 2
    assert keys_by_state("RS256")["active"] == next_rs  # the published next key, not a fresh one
    assert len(keys_by_state("ES256")["active"]) == 1 and len(keys_by_state("ES256")["next"]) == 1
    assert_invariants(t0 + SECOND)


def test_rotate_now_promotes_the_published_next_key_at_once(app_ctx, t0):
    before = {alg: keys_by_state(alg) for alg in keyring.ALGORITHMS}
    now = t0 + LEAD
    promoted = rotate_now(actor="admin:1", now=now)
    assert sorted(key.kid for key in promoted) == sorted(before[alg]["next"][0] for alg in keyring.ALGORITHMS)
    for alg in keyring.ALGORITHMS:
        after = keys_by_state(alg)
        assert after["active"] == before[alg]["next"] and after["retired"] == before[alg]["active"]
        assert keyring.signing_key(alg)[0] == after["active"][0]  # this process sees it at once
    assert all(event.actor == "admin:1" and event.details["reason"] == "manual" for event in actions("key.activated"))


def test_rotate_now_refuses_a_next_key_younger_than_the_lead_time_unless_forced(app_ctx, t0):
    rotate_now(actor="cli", now=t0 + LEAD)
    snapshot = keys_by_state()
    events = db.session.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(ValidationError, match="relying parties that cache the JWKS may not have it"):
        rotate_now(actor="cli", now=t0 + LEAD + timedelta(minutes=5))
    assert keys_by_state() == snapshot
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == events
    rs256 = keys_by_state("RS256")
    forced = rotate_now(actor="cli", now=t0 + LEAD + timedelta(minutes=5), force=True, alg="ES256")
    assert [key.alg for key in forced] == ["ES256"]
    assert actions("key.activated")[-1].details["lead_time_met"] is False
    assert keys_by_state("RS256") == rs256


def test_rotate_now_rejects_an_unknown_algorithm(app_ctx):
    with pytest.raises(ValidationError, match="unknown algorithm 'HS256'"):
        rotate_now(actor="cli", alg="HS256")


def test_revoking_the_active_key_withdraws_it_and_signing_continues(app_ctx, t0):
    before = keys_by_state("RS256")
    revoked = revoke_key(before["active"][0], actor="admin:1", now=t0 + SECOND)
    assert revoked.state is KeyState.REVOKED and revoked.revoked_at == t0 + SECOND
    after = keys_by_state("RS256")
    assert after["revoked"] == before["active"]
    assert after["active"] == before["next"]
    assert len(after["next"]) == 1
    assert before["active"][0] not in published_kids()
    assert keyring.verification_key(before["active"][0]) is None
    assert keyring.signing_key("RS256")[0] == before["next"][0]
    event = actions("key.revoked")[0]
    assert (event.actor, event.target, event.details["previous_state"]) == ("admin:1", f"key:{before['active'][0]}", "active")
    assert actions("key.activated")[0].details["reason"] == "revocation"


@pytest.mark.parametrize("state", ["next", "retired"])
def test_revoking_a_next_or_retired_key_keeps_signing_untouched(app_ctx, t0, state):
    if state == "retired":
        run_rotation(now=t0 + PERIOD)
    before = keys_by_state("ES256")
    revoke_key(before[state][0], actor="cli", now=t0 + PERIOD + SECOND)
    after = keys_by_state("ES256")
    assert after["active"] == before["active"]
    assert after["revoked"] == before[state]
    assert len(after["next"]) == 1 and before[state][0] not in published_kids()


def test_revoke_refuses_unknown_and_already_revoked_keys(app_ctx):
    with pytest.raises(NotFoundError):
        revoke_key("no-such-kid", actor="cli")
    kid = keys_by_state("ES256")["next"][0]
    revoke_key(kid, actor="cli")
    with pytest.raises(ValidationError, match="already revoked"):
        revoke_key(kid, actor="cli")


def test_revoked_keys_are_deleted_after_the_grace(app_ctx, t0):
    kid = keys_by_state("ES256")["next"][0]
    revoke_key(kid, actor="cli", now=t0)
    assert run_rotation(now=t0 + GRACE + CACHE - SECOND)["purged"] == 0
    assert run_rotation(now=t0 + GRACE + CACHE)["purged"] == 1
    assert kid not in keys_by_state()["revoked"]


def test_the_database_refuses_a_second_active_or_next_key(app_ctx):
    for have, becomes in ((KeyState.NEXT, KeyState.ACTIVE), (KeyState.ACTIVE, KeyState.NEXT)):
        with pytest.raises(IntegrityError):
            db.session.execute(update(SigningKey).where(SigningKey.alg == "RS256", SigningKey.state == have).values(state=becomes))
        db.session.rollback()
    # Other algorithms and other states are not limited.
    db.session.execute(update(SigningKey).where(SigningKey.state.in_([KeyState.ACTIVE, KeyState.NEXT])).values(state=KeyState.RETIRED))
    db.session.commit()
    assert len(keys_by_state()["retired"]) == 4


def test_a_step_whose_key_changed_underneath_writes_nothing(app, t0):
    """Conditional UPDATEs: a runner acting on a stale read loses, and its transaction is rolled back."""
    with app.app_context():
        stale = db.session.scalar(select(SigningKey).where(SigningKey.alg == "RS256", SigningKey.state == KeyState.NEXT))
        # Another runner (its own connection) promotes it first.
        other = create_engine(app.config["DATABASE_URL"])
        with other.begin() as connection:
            connection.execute(text("UPDATE signing_keys SET state = 'retired' WHERE id = :id"), {"id": stale.id})
        other.dispose()
        with pytest.raises(RotationConflict):
            rotation._transition(stale, KeyState.NEXT, KeyState.ACTIVE, activated_at=t0)
        db.session.rollback()


def test_racing_runners_rotate_exactly_once(make_app, t0):
    """Several runners tick at the same moment without the job lock; exactly one rotation happens."""
    # Each runner waits its turn on the algorithm's row lock while the holder generates a key; on a
    # loaded machine the queue of four can outlast the 5 s statement timeout, which is not the subject.
    app = make_app(DATABASE_STATEMENT_TIMEOUT=60)
    now = t0 + PERIOD
    results, errors = [], []
    barrier = threading.Barrier(4)

    def runner(step):
        with app.app_context():
            try:
                barrier.wait()
                results.append(step())
            except Exception as error:  # collected and asserted on below
                errors.append(error)
            finally:
                db.session.remove()

    steps = [lambda: run_rotation(now=now)] * 3 + [lambda: rotate_now(actor="admin:1", now=now)]
    threads = [threading.Thread(target=runner, args=(step,)) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    # A runner still going would write its rotation into the next test's keys.
    assert not any(thread.is_alive() for thread in threads)
    # rotate_now may lose the race (a clean RotationConflict, or a refusal because the next key it
    # would promote was published this very moment); nothing else may fail.
    assert all(isinstance(error, (RotationConflict, ValidationError)) for error in errors), errors
    with app.app_context():
        for alg in keyring.ALGORITHMS:
            states = keys_by_state(alg)
            assert len(states["active"]) == 1 and len(states["next"]) == 1, states
            assert len(states["retired"]) == 1, states  # one rotation, not two
        assert_invariants(now)


def test_a_zero_period_means_rotation_by_hand_only(app, app_ctx, t0):
    app.config["KEY_ROTATION_PERIOD"] = 0
    before = keys_by_state()
    assert run_rotation(now=t0 + 100 * PERIOD)["activated"] == 0
    assert keys_by_state() == before
    assert len(rotate_now(actor="cli", now=t0 + LEAD)) == 2


def test_decrypted_private_keys_sign_and_verify_without_a_second_consistency_check(app_ctx):
    """The keyring's keys come from authenticated ciphertext: they sign, and the JWKS verifies them."""
    from idp.clock import utcnow
    from tests.keys.conftest import verifies_with

    for alg in ("RS256", "ES256"):
        kid, private = keyring.signing_key(alg)
        assert private.unsafe_skip_rsa_key_validation and private.has_private
        token = sign_token(alg, issued_at=utcnow(), lifetime=60)
        assert token["kid"] == kid and verifies_with(token, keyring.jwks().body)
    tampered = keyring.key_encryptor().encrypt(b'{"kty": "oct", "k": "AAAA"}')[:-4] + "AAAA"
    with pytest.raises(ValueError, match="no configured key-encryption key decrypts"):
        keyring.key_encryptor().decrypt(tampered)
