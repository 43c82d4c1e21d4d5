"""An outage is logged once when it starts, once a minute while it lasts, and once with its count at the end."""

import logging

import psycopg
from sqlalchemy.exc import IntegrityError, OperationalError

from idp.outages import REMIND_SECONDS, OutageLog, describe, is_database_unavailable


def refused() -> OperationalError:
    return OperationalError("SELECT secret FROM t WHERE token = %s", {"token": "tok"}, psycopg.OperationalError("connection failed: Connection refused\nIs the server running?"))


def test_an_episode_logs_its_start_a_reminder_and_its_end_with_counts(caplog):
    now = [100.0]
    episode = OutageLog("database", clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="idp.outages"):
        for _ in range(50):
            episode.failed(refused())
        now[0] += REMIND_SECONDS
        episode.failed(refused())
        now[0] += 1
        episode.recovered()
        episode.recovered()  # no episode: nothing to say
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "database unavailable (OperationalError: connection failed: Connection refused); answering 503 until it is back",
        "database still unavailable after 60 s; 51 requests answered 503 so far",
        "database is back after 61.0 s; 51 requests answered 503 meanwhile",
    ]
    assert all(record.exc_info is None for record in caplog.records)


def test_connection_errors_are_recognised_through_the_errors_they_caused():
    try:
        try:
            raise refused()
        except OperationalError as error:
            raise RuntimeError("wrapped") from error
    except RuntimeError as wrapped:
        assert is_database_unavailable(wrapped)
    assert not is_database_unavailable(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_database_unavailable(ValueError("no"))
    # The SQL statement and its parameters never reach the log line.
    assert "tok" not in describe(refused()) and "SELECT" not in describe(refused())


def test_a_session_cookie_met_by_an_outage_is_a_503_not_a_500(secrets_config):
    """Opening the session is the first database call of a request that brings a cookie."""
    import socket

    from idp import create_app

    with socket.socket() as closed:  # a port nothing listens on: the connection is refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    app = create_app({"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/gone", **secrets_config})
    client = app.test_client(use_cookies=False)  # the cookie jar would replace the Cookie header
    for path, kind in (("/login", "text/html"), ("/account", "text/html"), ("/admin/", "text/html"), ("/userinfo", "application/json")):
        response = client.get(path, headers={"Cookie": f"idp_session={'A' * 43}; idp_admin={'B' * 43}"})
        assert response.status_code == 503 and response.headers["Retry-After"], path
        assert response.mimetype == kind, path
    with app.app_context():
        from idp.db import db

        db.engine.dispose()
