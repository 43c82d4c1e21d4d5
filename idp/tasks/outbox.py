"""Tasks queued by a transaction are sent only once it commits (cf. warehouse's WarehouseTask).

A rollback drops them, so a worker never acts on a change that did not happen. Publishing runs on
a background thread: a broker that is down (the Redis client alone retries for seconds) never holds
up the request that caused the task; the failure is logged.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from idp.db import db

log = logging.getLogger(__name__)
_PENDING = "idp.pending_tasks"
_publisher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="idp-outbox")


def send_after_commit(task_name: str, **kwargs: Any) -> None:
    """Queue `task_name(**kwargs)` to be published when the current transaction commits."""
    db.session.info.setdefault(_PENDING, []).append((current_app.extensions["celery"], task_name, kwargs))


def _send(celery_app, task_name: str, kwargs: dict) -> None:
    from idp.tasks import publish  # late import: idp.tasks imports the app's task modules

    try:
        publish(celery_app, task_name, kwargs)
    except Exception:  # noqa: BLE001 -- any broker failure: log it, the change itself stands
        log.exception("could not queue task %s; the broker is unreachable", task_name)


@event.listens_for(Session, "after_commit")
def _publish(session: Session) -> None:
    for celery_app, task_name, kwargs in session.info.pop(_PENDING, []):
        _publisher.submit(_send, celery_app, task_name, kwargs)


@event.listens_for(Session, "after_soft_rollback")
def _discard(session: Session, previous_transaction) -> None:
    if not session.in_transaction():
        session.info.pop(_PENDING, None)
