"""Celery wiring: every task runs inside the Flask app context (pallets/flask examples/celery)."""

from __future__ import annotations

from celery import Celery, Task
from flask import Flask, current_app
from kombu.exceptions import OperationalError as BrokerError

from idp.db import unit_of_work
from idp.errors import IdpError
from idp.tasks.schedule import BEAT_SCHEDULE

# Redis re-delivers a message a worker took but never acknowledged (the worker was SIGKILLed, its
# node lost) after this long. It must exceed the longest task (an outbox delivery is cut off after
# 15 s, a purge of a large backlog takes minutes) and every retry countdown, or a task still running
# or waiting would run twice. Prompt recovery does not wait for it: the outbox relay republishes an
# unfinished delivery, and the relay reruns a job whose runner died (idp/jobs/service.py).
VISIBILITY_TIMEOUT_SECONDS = 900
REDIS_TRANSPORT_OPTIONS = {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS}
# Sending from a web request must fail fast when Redis is down, never hang the request on kombu's
# reconnect loop: one connection attempt, short socket timeouts. (The embedded broker is a local
# SQLite file, and its transport passes options to create_engine, so it gets none.)
FAIL_FAST_TRANSPORT_OPTIONS = {**REDIS_TRANSPORT_OPTIONS, "max_retries": 0, "interval_start": 0, "socket_connect_timeout": 2, "socket_timeout": 2}


def uses_redis(broker_url: str) -> bool:
    """True for redis:// and rediss:// broker URLs."""
    return broker_url.startswith(("redis://", "rediss://"))


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app bound to `app`, configured from the IdP's settings."""

    class FlaskTask(Task):
        # The task's edge (idp/db.py): one transaction, committed when the run returns.
        def __call__(self, *args, **kwargs):
            with app.app_context(), unit_of_work():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(
        broker_url=app.config["CELERY_BROKER_URL"],
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        beat_schedule_filename=f"{app.instance_path}/celerybeat-schedule",
        # Jobs are idempotent: acknowledge after the run, so a worker that dies mid-run leaves the
        # message to be delivered again (per task: idp/tasks/jobs.py). One message at a time per
        # process, so a long purge does not sit on messages another worker could take.
        worker_prefetch_multiplier=1,
        # How long the worker waits for a dead pool process's last word before it re-queues the
        # message (default 10 s). Results are ignored and jobs idempotent, so waiting longer buys nothing.
        worker_lost_wait=1.0,
        broker_transport_options=REDIS_TRANSPORT_OPTIONS if uses_redis(app.config["CELERY_BROKER_URL"]) else {},
        include=["idp.tasks.jobs", "idp.tasks.outbox", "idp.oidc.backchannel", "idp.onboarding.mails"],
    )
    celery_app.conf.beat_schedule = BEAT_SCHEDULE
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def publish(celery: Celery, name: str, kwargs: dict | None = None, **options) -> str:
    """Send task `name` with one quick connection attempt; returns the task id, raises broker errors.

    `options` go to `send_task` (countdown, expires).
    """
    transport_options = FAIL_FAST_TRANSPORT_OPTIONS if uses_redis(celery.conf.broker_url) else {}
    with celery.connection_for_write(transport_options=transport_options) as connection:
        return celery.send_task(name, kwargs=kwargs or {}, connection=connection, retry=False, **options).id


def check_broker(celery: Celery) -> None:
    """Connect to the broker once, quickly (a Redis PING); raise the broker's error if that fails."""
    options = FAIL_FAST_TRANSPORT_OPTIONS if uses_redis(celery.conf.broker_url) else {}
    with celery.connection_for_write(transport_options=options) as connection:
        connection.ensure_connection(max_retries=0)


def send_task(name: str, kwargs: dict | None = None) -> str:
    """Queue task `name` without blocking on a broker that is down; returns the task id.

    :raise IdpError: the broker is unreachable (nothing was queued).
    """
    try:
        return publish(current_app.extensions["celery"], name, kwargs)
    except (BrokerError, OSError) as error:
        raise IdpError(f"the task broker is unreachable ({error}); the job was not queued") from None
