"""Dependency outages: a lost database answers 503 with Retry-After, logged once per episode.

Every request that meets a connection-level database error (refused, reset, terminated, timed
out), wherever in the request it happens (the view, opening or saving the session, an
after-request hook, the teardown), gets one answer: 503 with `Retry-After`, as OAuth JSON
(`temporarily_unavailable`) on protocol endpoints and as an escaped HTML page on pages. An outage
is logged when it starts, every REMIND_SECONDS while it lasts and when it ends, with counts, never
as a traceback per request (issue 15).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import psycopg
from flask import Flask, Response, current_app, g, jsonify, make_response
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from idp.db import db, has_writes, response_keeps_changes
from idp.errors import render_error_page
from idp.web.errors import wants_json
from idp.web.headers import NO_STORE, secure

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
REMIND_SECONDS = 60
# psycopg's own errors only reach us wrapped by SQLAlchemy, or as the cause of something else;
# QueryCanceled (the statement timeout) is an OperationalError too.
CONNECTION_ERRORS = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError, psycopg.OperationalError, psycopg.InterfaceError)


def is_database_unavailable(error: BaseException | None) -> bool:
    """True when `error`, or an error that led to it, says the database cannot be reached in time."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, CONNECTION_ERRORS):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def describe(error: BaseException) -> str:
    """One line naming the error, without the SQL statement or its parameters."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0] if lines else ''}"


class OutageLog:
    """One dependency's outage episodes: logged at the start, every REMIND_SECONDS, and at the end."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._started: float | None = None
        self._reminded = 0.0
        self._failures = 0

    def failed(self, error: BaseException) -> None:
        """Count one request that met the outage; log only the first one and a reminder a minute."""
        with self._lock:
            now = self._clock()
            self._failures += 1
            if self._started is None:
                self._started = self._reminded = now
                log.warning("%s unavailable (%s); answering 503 until it is back", self.name, describe(error))
            elif now - self._reminded >= REMIND_SECONDS:
                self._reminded = now
                log.warning("%s still unavailable after %.0f s; %d requests answered 503 so far", self.name, now - self._started, self._failures)

    def recovered(self) -> None:
        """End the episode, if there is one, with its length and count."""
        if self._started is None:
            return
        with self._lock:
            if self._started is None:
                return
            log.warning("%s is back after %.1f s; %d requests answered 503 meanwhile", self.name, self._clock() - self._started, self._failures)
            self._started, self._failures = None, 0


def outage_log(part: str) -> OutageLog:
    """This app's episode log of `part`: "database" or "broker"."""
    return current_app.extensions["idp.outages"][part]


def database_lost() -> bool:
    """True once this request has met a database outage: what is left of it must not use the database."""
    return g.get("idp_database_lost", False)


def session_opened() -> bool:
    """Whether this app context has a database session yet (asking `db.session` would open one)."""
    return db.session.registry.has()


def discard_session() -> None:
    """Drop the request's database session without letting a dead connection raise."""
    try:
        db.session.remove()
    except Exception as error:  # noqa: BLE001 - the teardown must never fail the response
        if not is_database_unavailable(error):
            log.exception("could not close the database session")
        try:
            db.session.invalidate()  # closes the DBAPI connection without a rollback on it
        except Exception:  # noqa: BLE001
            pass
        db.session.registry.clear()


def unavailable_response() -> Response:
    """503 with Retry-After (RFC 9110 15.6.4) in the endpoint's own error format."""
    if wants_json():
        # RFC 6749 4.1.2.1 names `temporarily_unavailable`; the JSON endpoints use it alike.
        response = jsonify(error="temporarily_unavailable", error_description="The service is temporarily unavailable; try again shortly.")
        response.status_code = 503
    else:
        response = make_response(render_error_page(503, "Temporarily unavailable", "This service is temporarily unavailable. Please try again in a moment."))
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return secure(response, NO_STORE)


def database_unavailable(error: BaseException) -> Response:
    """Count the outage, drop the broken session, and answer 503."""
    outage_log("database").failed(error)
    g.idp_database_lost = True
    discard_session()
    return unavailable_response()


def defer_database_error(error: BaseException) -> None:
    """Keep an outage met while opening the session for the first before-request hook to answer."""
    g.idp_deferred_database_error = error


def answer_deferred_database_error() -> Response | None:
    """The 503 for an outage met before the request could reach its view (see defer_database_error)."""
    error = g.pop("idp_deferred_database_error", None)
    return database_unavailable(error) if error is not None else None


class IdpFlask(Flask):
    """Flask, answering a lost database with 503 wherever in the request it is met, and owning
    the request's transaction (idp/db.py): it ends here, before the response is sent."""

    def process_response(self, response):
        # An error answer drops what the view changed before the session is saved, so the
        # session's own row (its CSRF token, last-seen time) is still kept; then one commit
        # holds the view's changes and the session's. It runs before the response leaves: a
        # commit that fails becomes the error answer (a lost database: 503), never a false success.
        # A request that never opened a database session (JWKS, discovery, a cached client's
        # token) has nothing to roll back or commit: asking would open a session just to close it.
        if not database_lost() and not response_keeps_changes(response.status_code) and session_opened():
            db.session.rollback()
        response = super().process_response(response)
        if not database_lost() and session_opened() and has_writes():
            db.session.commit()  # the request's edge; a request that only read ends at the teardown
        return response

    def handle_user_exception(self, e):
        if is_database_unavailable(e):
            return database_unavailable(e)
        return super().handle_user_exception(e)

    def handle_exception(self, e):
        # Opening or saving the session and after-request hooks fail outside the view, where
        # Flask would log a traceback and answer 500.
        if is_database_unavailable(e):
            return self.finalize_request(database_unavailable(e), from_error_handler=True)
        return super().handle_exception(e)


def init_outages(app: Flask) -> None:
    """End the database episode on the first new connection, and guard the session teardown."""
    logs = app.extensions["idp.outages"] = {"database": OutageLog("database"), "broker": OutageLog("task broker")}
    with app.app_context():
        event.listen(db.engine, "connect", lambda *_: logs["database"].recovered())
    app.before_request_funcs.setdefault(None, []).insert(0, answer_deferred_database_error)
    # Registered after Flask-SQLAlchemy's, so it runs first (teardowns run in reverse): its own
    # `session.remove()` then finds nothing to roll back on a dead connection.
    app.teardown_appcontext(lambda _exc: discard_session())
