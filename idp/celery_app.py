"""Entry point for the `celery` command: `celery -A idp.celery_app worker`."""

from idp import create_app

flask_app = create_app()
celery = flask_app.extensions["celery"]
