"""Job runs: recorded from start to end, one runner at a time, listed, and queued without blocking."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from idp import create_app
from idp.clock import utcnow
from idp.db import db
from idp.errors import IdpError, NotFoundError, ValidationError
from idp.jobs import service as jobs
from idp.jobs.locks import single_runner
from idp.jobs.models import JobRun
from idp.tasks.schedule import BEAT_SCHEDULE
from tests.support import free_port


def runs(job: str) -> list[JobRun]:
    db.session.expire_all()
    return list(db.session.scalars(select(JobRun).where(JobRun.job == job).order_by(JobRun.id)))


def test_a_successful_run_records_start_end_outcome_and_counts(app_ctx):
    before = utcnow()
    run = jobs.run_job("purge")
    assert run.outcome == "succeeded" and run.error is None
    assert before <= run.started_at <= run.finished_at <= utcnow()
    assert set(run.counts) == {"authorization_codes", "refresh_tokens", "refresh_families", "revoked_access_tokens", "sessions", "audit_events", "job_runs", "outbox_messages", "login_throttles", "one_time_links"}
    assert [r.id for r in runs("purge")] == [run.id]


def test_a_failing_run_is_recorded_then_raised(app_ctx):
    def broken(now=None):
        db.session.execute(JobRun.__table__.insert().values(job="half-written", started_at=utcnow(), outcome="x", counts={}))
        raise RuntimeError("disk on fire\nsecond line with detail")

    with pytest.raises(RuntimeError, match="disk on fire"):
        jobs.run_job("purge", broken)
    [run] = runs("purge")
    assert run.outcome == "failed" and run.finished_at is not None
    assert run.error == "RuntimeError: disk on fire"
    assert runs("half-written") == []  # the job's own writes were rolled back


def test_a_busy_lock_records_a_skipped_run_and_runs_nothing(app_ctx):
    called = []
    with single_runner("purge") as held:
        assert held
        run = jobs.run_job("purge", lambda now=None: called.append(1) or {})
    assert run.outcome == "skipped" and run.started_at == run.finished_at
    assert called == []
    with single_runner("purge") as held_again:
        assert held_again  # released when the first runner finished
        with single_runner("rotate_keys") as other:
            assert other  # one lock per job


def test_the_lock_is_not_shared_between_connections_of_one_process(app):
    """The lock is per runner, not per process: a second app (its own connections) is refused too."""
    other = create_app(dict(app.config))
    with app.app_context(), single_runner("purge") as first:
        with other.app_context(), single_runner("purge") as second:
            assert first and not second
        with other.app_context():
            db.engine.dispose()


def test_a_run_left_running_by_a_dead_runner_is_closed_by_the_next_run(app_ctx):
    db.session.add(JobRun(job="purge", started_at=utcnow(), outcome="running", counts={}))
    db.session.commit()
    jobs.run_job("purge")
    dead, latest = runs("purge")
    assert (dead.outcome, dead.error) == ("failed", "interrupted: the runner stopped before finishing")
    assert latest.outcome == "succeeded"


def test_last_runs_gives_the_latest_run_of_each_job(app_ctx):
    jobs.run_job("purge")
    jobs.run_job("rotate_keys")
    with single_runner("purge"):
        skipped = jobs.run_job("purge")
    latest = {run.job: run for run in jobs.last_runs()}
    assert set(latest) == {"purge", "rotate_keys"}
    assert latest["purge"].id == skipped.id and latest["rotate_keys"].outcome == "succeeded"
    assert jobs.describe_run(latest["rotate_keys"])["counts"]["created"] == 0


def test_unknown_job_names_are_refused(app_ctx):
    with pytest.raises(NotFoundError, match="known jobs: purge, rotate_keys"):
        jobs.run_job("drop_everything")
    with pytest.raises(NotFoundError):
        jobs.enqueue("drop_everything")


def test_the_job_clock_override_is_refused_unless_enabled(app):
    with app.app_context():
        assert jobs.job_clock(None) is None
        assert jobs.job_clock("2030-01-01T00:00:00+00:00").year == 2030
        with pytest.raises(ValidationError, match="no time zone"):
            jobs.job_clock("2030-01-01T00:00:00")
        app.config["JOB_CLOCK_OVERRIDE"] = False
        with pytest.raises(ValidationError, match="JOB_CLOCK_OVERRIDE is off"):
            jobs.job_clock("2030-01-01T00:00:00+00:00")


def test_enqueue_fails_fast_when_the_broker_is_down(config):
    """A web request that queues a job never hangs on a dead broker: one quick attempt, a clear error."""
    app = create_app({**config, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"})
    with app.app_context():
        started = time.monotonic()
        with pytest.raises(IdpError, match="broker is unreachable"):
            jobs.enqueue("purge")
        assert time.monotonic() - started < 3  # a bound on blocking, not a speed measurement


def test_the_beat_schedule_names_a_registered_task_for_every_job(app):
    celery = app.extensions["celery"]
    celery.loader.import_default_modules()
    scheduled = {entry["task"] for entry in BEAT_SCHEDULE.values()}
    assert scheduled == {jobs.task_name(name) for name in jobs.JOBS} | {"idp.relay"}  # the outbox relay and job watchdog
    for name in scheduled:
        task = celery.tasks[name]
        assert task.acks_late and task.reject_on_worker_lost
    assert all(entry["options"]["expires"] <= entry["schedule"] for entry in BEAT_SCHEDULE.values())
