"""Celery tasks: thin wrappers over service functions the CLI also calls."""

from __future__ import annotations

from celery import shared_task

from idp.clock import utcnow
from idp.db import db
from idp.jobs.models import JobRun


@shared_task(name="idp.ping")
def ping() -> int:
    """Worker round trip: runs in the app context, reaches the database and records a `ping` run."""
    now = utcnow()
    run = JobRun(job="ping", started_at=now, finished_at=now, outcome="succeeded", counts={})
    db.session.add(run)
    db.session.commit()
    return run.id
