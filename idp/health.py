"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from idp.db import db
from idp.outages import RETRY_AFTER_SECONDS, discard_session, is_database_unavailable, outage_log
from idp.tasks import check_broker
from idp.web.headers import NO_STORE

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """The database and the task broker answer; 503 (with each part's state) otherwise."""
    parts = {"database": _database_state(), "broker": _broker_state()}
    if all(state == "ok" for state in parts.values()):
        return jsonify(status="ok", **parts)
    return jsonify(status="unavailable", **parts), 503, {"Retry-After": str(RETRY_AFTER_SECONDS), **NO_STORE}


def _database_state() -> str:
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        if not is_database_unavailable(error):
            raise
        # Counted in the outage episode (logged once), not a traceback per probe.
        outage_log("database").failed(error)
        discard_session()
        return "unreachable"
    return "ok"


def _broker_state() -> str:
    try:
        check_broker(current_app.extensions["celery"])
    except (BrokerError, OSError) as error:
        outage_log("broker").failed(error)
        return "unreachable"
    outage_log("broker").recovered()
    return "ok"
