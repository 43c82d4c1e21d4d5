"""Celery wiring: every task runs inside the Flask app context (pallets/flask examples/celery)."""

from __future__ import annotations

from celery import Celery, Task
from flask import Flask


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app bound to `app`, configured from the IdP's settings."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
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
        include=["idp.tasks.jobs", "idp.oidc.backchannel"],
    )
    from idp.tasks.schedule import BEAT_SCHEDULE

    celery_app.conf.beat_schedule = BEAT_SCHEDULE
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
