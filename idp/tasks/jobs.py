"""Celery tasks: thin wrappers over service functions the CLI also calls."""

from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app
from sqlalchemy.exc import OperationalError

from idp.clock import utcnow
from idp.db import db
from idp.jobs.models import JobRun
from idp.jobs.service import job_clock, rerun_interrupted, run_job
from idp.tasks import outbox

log = logging.getLogger(__name__)

# Both jobs are idempotent, so they are acknowledged only after they ran: a worker killed mid-run
# (SIGKILL, OOM, lost node) leaves the message to be delivered again. A database that is briefly
# unreachable is retried with backoff; any other error is recorded on the job run and not retried.
JOB_TASK_OPTIONS = dict(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=10,
    retry_backoff_max=300,  # below the broker's visibility timeout, which a waiting retry must not outlive
    retry_jitter=True,
    max_retries=5,
)


@shared_task(name="idp.ping")
def ping() -> int:
    """Worker round trip: runs in the app context, reaches the database and records a `ping` run."""
    now = utcnow()
    run = JobRun(job="ping", started_at=now, finished_at=now, outcome="succeeded", counts={})
    db.session.add(run)
    db.session.flush()  # the task's edge commits it (idp/tasks/__init__.py)
    return run.id


@shared_task(name="idp.rotate_keys", **JOB_TASK_OPTIONS)
def rotate_keys(now: str | None = None) -> dict[str, int]:
    """Advance the signing-key rotation (idp/keyring/rotation.py); `now` is for tests only."""
    return run_job("rotate_keys", now=job_clock(now)).counts


@shared_task(name="idp.purge", **JOB_TASK_OPTIONS)
def purge(now: str | None = None) -> dict[str, int]:
    """Delete expired rows (idp/purge.py); `now` is for tests only."""
    return run_job("purge", now=job_clock(now)).counts


@shared_task(name="idp.relay", acks_late=True, reject_on_worker_lost=True)
def relay() -> dict[str, int]:
    """Publish the outbox messages that are due, and rerun jobs whose runner died (beat, every few seconds)."""
    try:
        published = outbox.relay(current_app.extensions["celery"])
        return {"published": published, "rerun": len(rerun_interrupted())}
    except OperationalError as error:
        # The database is down: the next tick, seconds away, tries again; no traceback every tick.
        db.session.rollback()
        log.warning("relay skipped: the database is unreachable (%s)", str(error.orig).splitlines()[0] if error.orig else error)
        return {"published": 0, "rerun": 0}
