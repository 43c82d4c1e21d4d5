"""The transactional outbox: work that must follow a commit is a row written in the same transaction.

`add()` inserts an OutboxMessage beside the change it follows, so the message exists exactly when
the change does: a rollback drops both, and neither a broker that is down nor a process that dies
right after the commit loses it. Then:

- right after the commit, a background thread *nudges*: it publishes one `idp.outbox` task per new
  message, with one quick connection attempt (a broker that is down never holds up a request; the
  process logs that once, not per message, and again once the broker is back);
- every RELAY_SECONDS the `idp.relay` beat task publishes every message still not done whose
  `due_at` has passed: those the nudge could not publish, whose task was lost, or whose delivery
  was cut short (a killed worker);
- the `idp.outbox` task claims its message with a conditional UPDATE (the message id is the
  idempotency key: a duplicate or late copy finds it claimed or done and does nothing), runs the
  kind's handler, and marks the message done only once the handler succeeded, or failed for the
  last time; a failure is retried with exponential backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from celery import Celery, shared_task
from flask import current_app
from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import Session

from idp.clock import utcnow
from idp.db import commit_now, db
from idp.tasks import publish
from idp.tasks.models import OutboxMessage

log = logging.getLogger(__name__)

TASK_NAME = "idp.outbox"
# The nudge normally publishes a new message at once; the relay steps in only after this long.
NUDGE_GRACE = timedelta(seconds=10)
# A claim older than this belongs to a dead attempt, and the relay publishes the message again. The
# task's hard time limit is shorter, so no attempt outlives its claim.
CLAIM_SECONDS = 20
TIME_LIMIT_SECONDS = CLAIM_SECONDS - 5
# A published message not done after this long is published again (its task may have been lost);
# the copy expires by then, so a long worker outage does not pile up copies in the queue.
REPUBLISH_AFTER = timedelta(seconds=60)
RELAY_BATCH = 500
# A retry sooner than this is also published with a countdown, so it does not wait for the relay;
# well under the broker's visibility timeout (idp/tasks/__init__.py), which a held ETA task must not outlive.
COUNTDOWN_MAX_SECONDS = 300

_PENDING = "idp.outbox_pending"
_publisher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="idp-outbox")
_in_flight: set[Future] = set()


@dataclass(frozen=True)
class Handler:
    """How one kind of message is handled: `run(payload, attempt=, final=)` returns True when done."""

    run: Callable[..., bool]
    max_attempts: int
    retry_base: Callable[[dict], float]  # first retry delay in seconds, from the app's config


HANDLERS: dict[str, Handler] = {}


def handler(kind: str, *, max_attempts: int, retry_base: Callable[[dict], float]):
    """Register the function handling messages of `kind` (True: done; False: retry later)."""

    def register(fn: Callable[..., bool]) -> Callable[..., bool]:
        HANDLERS[kind] = Handler(fn, max_attempts, retry_base)
        return fn

    return register


def add(kind: str, **payload: Any) -> OutboxMessage:
    """Write a message of `kind` in the current transaction; it is published once that commits."""
    now = utcnow()
    message = OutboxMessage(kind=kind, payload=payload, created_at=now, due_at=now + NUDGE_GRACE, attempts=0)
    db.session.add(message)
    db.session.flush()  # the id is what the nudge publishes
    db.session.info.setdefault(_PENDING, []).append(message.id)
    return message


def connect() -> None:
    """Publish after every commit, forget after a rollback (wired by the app factory; once per process)."""
    for name, listener in (("after_commit", _nudge_after_commit), ("after_soft_rollback", _discard)):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


def _nudge_after_commit(session: Session) -> None:
    ids = session.info.pop(_PENDING, [])
    if ids:
        nudging = _publisher.submit(_nudge, current_app.extensions["celery"], ids)
        _in_flight.add(nudging)
        nudging.add_done_callback(_in_flight.discard)


def settle_nudges(timeout: float = 30) -> None:
    """Wait for the after-commit nudges submitted so far (a nudge meeting a dead broker takes seconds)."""
    wait(list(_in_flight), timeout)


def _discard(session: Session, previous_transaction) -> None:
    if not session.in_transaction():
        session.info.pop(_PENDING, None)


def _nudge(celery: Celery, ids: list[int]) -> None:
    if not broker_worth_trying():
        return  # a known outage: the relay publishes these once the broker is back
    try:
        for message_id in ids:
            publish_message(celery, message_id)
    except Exception as error:  # noqa: BLE001 -- any broker failure: the rows wait for the relay
        broker_down(error, waiting=len(ids))
    else:
        broker_up()


def publish_message(celery: Celery, message_id: int, countdown: float = 0) -> None:
    """Publish the `idp.outbox` task of one message (one quick attempt); raises broker errors."""
    # The copy expires when the relay would publish the next one anyway.
    expires = countdown + REPUBLISH_AFTER.total_seconds()
    publish(celery, TASK_NAME, {"message_id": message_id}, countdown=countdown or None, expires=expires)


# --- a broker outage: logged once per process and episode, probed at most every few seconds ---------

# During an outage a busy web process would otherwise spend a connection attempt (up to the 2 s
# socket timeout of a broker that drops packets) on every commit, piling nudges up in memory.
OUTAGE_PROBE_SECONDS = 5.0
_outage = {"down": False, "probe_at": 0.0}
_outage_lock = threading.Lock()


def broker_worth_trying() -> bool:
    """False while the broker is known to be down and the next probe is not due yet."""
    with _outage_lock:
        if not _outage["down"] or time.monotonic() >= _outage["probe_at"]:
            _outage["probe_at"] = time.monotonic() + OUTAGE_PROBE_SECONDS
            return True
        return False


def broker_down(error: BaseException, *, waiting: int) -> None:
    """Log the first failure of an outage (later ones stay quiet until the broker is back)."""
    with _outage_lock:
        first, _outage["down"] = not _outage["down"], True
        _outage["probe_at"] = time.monotonic() + OUTAGE_PROBE_SECONDS
    if first:
        log.warning("the task broker is unreachable (%s: %s); %d outbox message(s) are kept and will be "
                    "published once it is back (this is logged once per outage)", type(error).__name__, error, waiting)


def broker_up() -> None:
    """Note that publishing works (again)."""
    with _outage_lock:
        was_down, _outage["down"] = _outage["down"], False
    if was_down:
        log.warning("the task broker is reachable again; waiting outbox messages are being published")


# --- the relay (beat) ------------------------------------------------------------------------------


def relay(celery: Celery, now: datetime | None = None) -> int:
    """Publish every undone message whose `due_at` has passed; returns how many were published.

    Each is published before its new `due_at` commits, so a crash in between publishes it twice (a
    duplicate is harmless), never zero times. On PostgreSQL two relays skip each other's rows.
    """
    now = now or utcnow()
    query = (select(OutboxMessage).where(OutboxMessage.done_at.is_(None), OutboxMessage.due_at <= now)
             .order_by(OutboxMessage.due_at).limit(RELAY_BATCH))
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    due = list(db.session.scalars(query))
    published = 0
    try:
        for message in due:
            publish_message(celery, message.id)
            message.due_at = now + REPUBLISH_AFTER
            published += 1
    except Exception as error:  # noqa: BLE001 -- the broker failed: keep what was published, retry the rest later
        broker_down(error, waiting=len(due) - published)
    else:
        broker_up()
    commit_now("step: the relay's new due times, releasing its row locks before the job reruns take theirs")
    return published


# --- handling one message (the worker) ---------------------------------------------------------------


@shared_task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, time_limit=TIME_LIMIT_SECONDS)
def handle(message_id: int) -> str:
    """Claim message `message_id`, run its handler, and record the outcome; idempotent."""
    return run(message_id, current_app.extensions["celery"])


def run(message_id: int, celery: Celery) -> str:
    """Handle one message unless it is done or claimed by a running attempt; returns what happened."""
    if not _claim(message_id):
        return "skipped"
    message = db.session.get(OutboxMessage, message_id)
    kind = HANDLERS.get(message.kind)
    if kind is None:
        return _finish(message, "failed", error=f"no handler for {message.kind!r}")
    final = message.attempts >= kind.max_attempts
    try:
        done = kind.run(dict(message.payload), attempt=message.attempts, final=final)
        error = None if done else "not delivered"
    except Exception as failure:  # noqa: BLE001 -- recorded on the message and retried
        db.session.rollback()  # only the handler's half-done work: the claim was committed before it ran
        log.warning("outbox message %s (%s) failed", message_id, message.kind, exc_info=True)
        done, error = False, f"{type(failure).__name__}: {failure}"[:2000]
        message = db.session.get(OutboxMessage, message_id)
    if done:
        return _finish(message, "delivered")
    if final:
        return _finish(message, "failed", error=error)
    return _retry_later(message, kind, error, celery)


def _claim(message_id: int) -> bool:
    now = utcnow()
    claimed = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.done_at.is_(None),
               or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until <= now))
        .values(claimed_until=now + timedelta(seconds=CLAIM_SECONDS), due_at=now + timedelta(seconds=CLAIM_SECONDS),
                attempts=OutboxMessage.attempts + 1)
    ).rowcount
    commit_now("step: the claim is seen by every other attempt before the handler runs")
    return bool(claimed)


def _finish(message: OutboxMessage, outcome: str, *, error: str | None = None) -> str:
    message.done_at, message.outcome, message.claimed_until, message.last_error = utcnow(), outcome, None, error
    commit_now("step: the outcome is kept before the task acknowledges its message")
    return outcome


def _retry_later(message: OutboxMessage, kind: Handler, error: str | None, celery: Celery) -> str:
    delay = kind.retry_base(current_app.config) * 2 ** (message.attempts - 1)
    now = utcnow()
    message.claimed_until, message.last_error = None, error
    # A short delay gets its own countdown task; the relay only covers that task getting lost.
    countdown = delay <= COUNTDOWN_MAX_SECONDS
    message.due_at = now + timedelta(seconds=delay) + (REPUBLISH_AFTER if countdown else timedelta())
    message_id = message.id
    commit_now("step: the retry is stored before its countdown task is published")
    if countdown:
        try:
            publish_message(celery, message_id, countdown=delay)
        except Exception as failure:  # noqa: BLE001 -- the relay publishes it when due
            broker_down(failure, waiting=1)
    return "retry"
