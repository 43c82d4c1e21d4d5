"""The transactional outbox in one process, on every backend: written with the change, relayed when
due, handled once, retried with backoff; and the relay's rerun of job runs whose runner died."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from idp.clock import utcnow
from idp.db import db
from idp.jobs.locks import single_runner
from idp.jobs.models import JobRun
from idp.jobs.service import INTERRUPTED, rerun_interrupted
from idp.models import Client, OutboxMessage, User
from idp.sessions.service import new_row
from idp.signout import sign_out_everywhere
from idp.tasks import outbox
from idp.tokens.refresh import start_family
from tests.conftest import empty_broker
from tests.support import committing, free_port

OUTBOX_LOG = "idp.tasks.outbox"


@pytest.fixture
def dead_broker_app(make_app):
    """The app with a Redis broker nobody listens on."""
    return make_app(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")


@pytest.fixture
def flaky_kind():
    """A test-only message kind whose handler fails as often as told, recording every call."""
    calls: list[dict] = []
    failures = {"left": 0}

    @outbox.handler("test.flaky", max_attempts=3, retry_base=lambda config: 30)
    def flaky(payload: dict, *, attempt: int, final: bool) -> bool:
        calls.append({"payload": payload, "attempt": attempt, "final": final})
        failures["left"] -= 1
        return failures["left"] < 0

    flaky.calls, flaky.failures = calls, failures
    yield flaky
    outbox.HANDLERS.pop("test.flaky")


def messages() -> list[OutboxMessage]:
    db.session.remove()
    return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_a_sign_out_keeps_its_logouts_while_the_broker_is_down_and_logs_that_once(dead_broker_app, make_user, make_client, caplog):
    app = dead_broker_app
    user = make_user()
    rp, _ = make_client(backchannel_logout_uri="https://rp.example.com/bc")
    with app.app_context():
        for offline in (False, True):
            _, row = new_row(app, "sso", db.session.get(User, user.id))
            start_family(client=db.session.get(Client, rp.id), user=db.session.get(User, user.id), scope="openid", sid=row.sid, offline=offline)
        db.session.commit()
        caplog.set_level(logging.WARNING, logger=OUTBOX_LOG)
        outbox.settle_nudges()  # a clean slate for the once-per-outage log
        outbox._outage["down"] = False
        committing(sign_out_everywhere)(db.session.get(User, user.id), actor="test")  # as the request would
        kept = messages()
        # Two sessions and the offline grant: three deliveries, written with the sign-out itself.
        assert [(m.kind, m.done_at, m.payload["client_id"]) for m in kept] == [("backchannel_logout", None, rp.client_id)] * 3
        assert {m.payload["sid"] for m in kept} >= {None} and all(m.payload["sub"] == user.subject for m in kept)
        # The after-commit nudge (on its thread), then the same again and the relay: one log line...
        celery = app.extensions["celery"]
        outbox._nudge(celery, [m.id for m in kept])
        outbox._nudge(celery, [kept[0].id])
        assert outbox.relay(celery, now=utcnow() + timedelta(minutes=1)) == 0
        down = [r.getMessage() for r in caplog.records if r.name == OUTBOX_LOG]
        assert len(down) == 1 and "unreachable" in down[0] and "3 outbox message(s) are kept" in down[0], down
        # ...and nothing was lost: every message is still due for the relay.
        assert all(m.done_at is None and m.attempts == 0 for m in messages())


def test_a_delivery_queued_by_an_older_release_is_adopted_into_the_outbox(app_ctx):
    from idp.oidc.backchannel import adopt_legacy_message

    committing(adopt_legacy_message.run)(client_id="rp", sub="s", sid="x", reason="logout")  # as the task wrapper would
    [message] = messages()
    assert (message.kind, message.payload, message.done_at) == ("backchannel_logout", {"client_id": "rp", "sub": "s", "sid": "x", "reason": "logout"}, None)


def test_a_rolled_back_change_leaves_no_message(app_ctx):
    outbox.add("backchannel_logout", client_id="x", sub="s", sid=None, reason="test")
    assert db.session.info[outbox._PENDING]
    db.session.rollback()
    assert messages() == [] and not db.session.info.get(outbox._PENDING)


def test_the_relay_publishes_what_is_due_and_a_message_is_handled_once(app, flaky_kind):
    celery = app.extensions["celery"]
    with app.app_context():
        due = outbox.add("test.flaky", n=1)
        later = outbox.add("test.flaky", n=2)
        done = outbox.add("test.flaky", n=3)
        db.session.commit()
        ids, later_due = (due.id, later.id, done.id), later.due_at
        assert outbox.run(ids[2], celery) == "delivered"
        now = utcnow()
        db.session.get(OutboxMessage, ids[0]).due_at = now - timedelta(seconds=1)
        db.session.commit()
        assert outbox.relay(celery, now=now) == 1  # not the one due later, not the done one
        first, second, third = messages()
        assert first.due_at == now + outbox.REPUBLISH_AFTER and second.due_at == later_due
        assert outbox.relay(celery, now=now) == 0  # published: not again before REPUBLISH_AFTER
        # Handled, then every copy (the nudge's, the relay's, a redelivery) finds it done.
        assert outbox.run(ids[0], celery) == "delivered"
        assert outbox.run(ids[0], celery) == outbox.run(ids[2], celery) == "skipped"
        assert [call["payload"]["n"] for call in flaky_kind.calls] == [3, 1]
        assert [(m.outcome, m.attempts) for m in messages()] == [("delivered", 1), (None, 0), ("delivered", 1)]
    empty_broker(app)


def test_failures_are_retried_with_backoff_until_the_last_attempt(dead_broker_app, flaky_kind, monkeypatch):
    app = dead_broker_app
    celery = app.extensions["celery"]
    flaky_kind.failures["left"] = 5
    with app.app_context():
        message_id = outbox.add("test.flaky", n=1).id
        db.session.commit()
        # A running attempt holds a claim: a concurrent copy leaves it alone.
        db.session.get(OutboxMessage, message_id).claimed_until = utcnow() + timedelta(seconds=10)
        db.session.commit()
        assert outbox.run(message_id, celery) == "skipped" and flaky_kind.calls == []
        db.session.get(OutboxMessage, message_id).claimed_until = utcnow() - timedelta(seconds=1)  # its runner died
        db.session.commit()
        delays = []
        for _ in range(2):
            # The outbox's clock stands still during the attempt, so the delay is exact however
            # long the attempt takes on a loaded machine (the wall clock made it 61 s once).
            before = utcnow()
            with monkeypatch.context() as clock:
                clock.setattr(outbox, "utcnow", lambda: before)
                assert outbox.run(message_id, celery) == "retry"
            message = messages()[0]
            delays.append((message.due_at - before - outbox.REPUBLISH_AFTER).total_seconds())
            assert message.done_at is None and message.claimed_until is None and message.last_error == "not delivered"
        assert delays == [30, 60]  # retry_base, doubled
        assert outbox.run(message_id, celery) == "failed"
        message = messages()[0]
        assert (message.outcome, message.attempts, message.done_at is not None) == ("failed", 3, True)
        assert [(call["attempt"], call["final"]) for call in flaky_kind.calls] == [(1, False), (2, False), (3, True)]
        assert outbox.run(message_id, celery) == "skipped"


def test_a_run_left_running_by_a_dead_runner_is_closed_and_queued_again(app):
    with app.app_context():
        started = utcnow() - timedelta(minutes=1)
        db.session.add(JobRun(job="purge", started_at=started, outcome="running", counts={}))
        db.session.commit()
        with single_runner("purge") as held:  # a live runner holds the lock: leave its run alone
            assert held and rerun_interrupted() == []
        assert [run.outcome for run in db.session.scalars(select(JobRun))] == ["running"]
        assert rerun_interrupted() == ["purge"]
        db.session.remove()
        run = db.session.scalars(select(JobRun)).one()
        assert (run.outcome, run.error) == ("failed", INTERRUPTED) and run.finished_at is not None
        assert rerun_interrupted() == []
    empty_broker(app)
