"""Running background jobs under a single-runner lock, recording every run, and listing the last ones.

The Celery tasks (idp/tasks/jobs.py), the CLI (`idp purge`, `idp keys rotate`) and the admin UI's
"run now" all go through `run_job` or `enqueue`, so every run is recorded the same way.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable

from flask import current_app
from sqlalchemy import func, select, update

from idp.clock import utcnow
from idp.db import commit_now, db
from idp.errors import NotFoundError, ValidationError
from idp.jobs.locks import single_runner
from idp.jobs.models import JobRun
from idp.keyring.rotation import run_rotation
from idp.purge import purge_expired
from idp.tasks import send_task

log = logging.getLogger(__name__)

# Every scheduled job by name: a function of an optional `now` returning counts. The beat schedule
# (idp/tasks/schedule.py) names the matching `idp.<name>` tasks.
JOBS: dict[str, Callable[..., dict[str, int]]] = {
    "rotate_keys": run_rotation,
    "purge": purge_expired,
}

ERROR_MAX_LENGTH = 2000
INTERRUPTED = "interrupted: the runner stopped before finishing"


def task_name(job: str) -> str:
    """The Celery task that runs `job`."""
    return f"idp.{job}"


def run_job(name: str, fn: Callable[..., dict[str, int]] | None = None, *, now: datetime | None = None) -> JobRun:
    """Run a job under its single-runner lock and record the run; a busy lock records `skipped`.

    A failure is recorded (outcome `failed`, with the error's first line) and then re-raised, so
    Celery can retry it.
    """
    fn = fn or require_job(name)
    with single_runner(name) as held:
        if not held:
            log.info("job %s skipped: another runner holds its lock", name)
            return _record_skipped(name)
        run_id = _start(name)
        try:
            counts = fn(now=now)
        except BaseException as error:
            db.session.rollback()  # only the job's uncommitted step: the run's start and the job's committed batches stay
            try:
                _finish(run_id, "failed", error=_describe(error))
            except Exception:
                pass  # logged by _finish; the job's own error is the one to raise
            raise
        return _finish(run_id, "succeeded", counts=counts)


def require_job(name: str) -> Callable[..., dict[str, int]]:
    """The job function called `name`; NotFoundError names the known jobs otherwise."""
    if name not in JOBS:
        raise NotFoundError(f"no job named {name!r}; known jobs: {', '.join(sorted(JOBS))}")
    return JOBS[name]


def _start(name: str) -> int:
    now = utcnow()
    _close_interrupted(name, now)
    run = JobRun(job=name, started_at=now, outcome="running", counts={})
    db.session.add(run)
    commit_now("step: the run shows as running while the job runs")
    return run.id


def _close_interrupted(name: str, now: datetime) -> int:
    """Mark `name`'s runs still `running` as failed; only call while holding the job's lock."""
    # We hold the lock, so any run still marked running died with its runner (a killed worker).
    return db.session.execute(
        update(JobRun).where(JobRun.job == name, JobRun.outcome == "running")
        .values(outcome="failed", finished_at=now, error=INTERRUPTED)
    ).rowcount


def rerun_interrupted() -> list[str]:
    """Close the runs of jobs whose runner died mid-run and queue each job again; returns their names.

    A run is `running` while its runner holds the job's lock; the lock dies with the runner. So a
    `running` run whose lock we can take belongs to a dead runner: it is marked failed at once and
    the job queued again (the relay calls this every few seconds), rather than left to the next
    scheduled tick or the broker's visibility timeout.
    """
    stale = db.session.scalars(select(JobRun.job).where(JobRun.outcome == "running").distinct()).all()
    commit_now("step: do not sit in a transaction while taking the job locks")
    rerun = []
    for name in stale:
        if name not in JOBS:
            continue
        with single_runner(name) as held:
            closed = _close_interrupted(name, utcnow()) if held else 0
        if not closed:
            db.session.rollback()  # nothing of this step was written; earlier jobs' steps are committed
            continue
        try:
            enqueue(name)  # before the commit: if the broker fails, the run stays `running` for the next try
        except Exception:
            db.session.rollback()
            raise
        commit_now("step: each interrupted job is closed and queued again on its own")
        log.warning("job %s was interrupted (its runner died); queued it again", name)
        rerun.append(name)
    return rerun


def _finish(run_id: int, outcome: str, *, counts: dict[str, int] | None = None, error: str | None = None) -> JobRun:
    try:
        run = db.session.get(JobRun, run_id)
        run.outcome, run.finished_at, run.error = outcome, utcnow(), error
        run.counts = dict(counts or {})
        commit_now("step: a job's outcome is kept though the job failed and rolled back its own work")
        return run
    except Exception:
        # Recording must not hide the job's own error (the database may be what failed).
        db.session.rollback()
        log.exception("could not record the end of job run %s (%s)", run_id, outcome)
        raise


def _record_skipped(name: str) -> JobRun:
    now = utcnow()
    run = JobRun(job=name, started_at=now, finished_at=now, outcome="skipped", counts={})
    db.session.add(run)
    commit_now("step: a skipped run is kept though the caller then fails (the CLI exits 1)")
    return run


def _describe(error: BaseException) -> str:
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}"[:ERROR_MAX_LENGTH]


def last_runs() -> list[JobRun]:
    """The latest run of every job that has run, by job name."""
    latest = select(func.max(JobRun.id)).group_by(JobRun.job).scalar_subquery()
    return list(db.session.scalars(select(JobRun).where(JobRun.id.in_(latest)).order_by(JobRun.job)))


def describe_run(run: JobRun) -> dict:
    """A run as plain data for `idp jobs --json` and the admin UI."""
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    return {
        "job": run.job, "outcome": run.outcome, "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_seconds": duration, "counts": run.counts, "error": run.error,
    }


def enqueue(name: str) -> str:
    """Queue a run of job `name` now (the admin UI's "run now"); returns the task id.

    Never blocks for long: if the broker is down this raises IdpError at once and nothing is queued
    (the beat schedule runs the job anyway once the broker is back).
    """
    require_job(name)
    return send_task(task_name(name))


def job_clock(now: str | None) -> datetime | None:
    """The `now` a task was given, honoured only when the test-only JOB_CLOCK_OVERRIDE key is on.

    Not a setting (no IDP_* variable): only the test suite's apps and processes set it.
    """
    if now is None:
        return None
    if not current_app.config.get("JOB_CLOCK_OVERRIDE"):
        raise ValidationError("a job was sent with a clock override, but the test-only JOB_CLOCK_OVERRIDE is off")
    try:
        value = datetime.fromisoformat(now)
    except ValueError:
        raise ValidationError(f"job clock {now!r} is not an ISO 8601 timestamp") from None
    if value.tzinfo is None:
        raise ValidationError(f"job clock {now!r} has no time zone")
    return value

