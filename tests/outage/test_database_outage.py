"""The database goes away under load and comes back (issue 15).

A private PostgreSQL cluster is stopped (fast shutdown), then its postmaster is SIGKILLed, while a
few threads call /token, the JWKS, discovery, /userinfo and /login on a real `idp serve`. Every
answer is a 200 or a 503 with Retry-After, the JWKS never fails, nothing waits longer than the
configured timeouts, the same server processes recover by themselves within seconds, and no
committed row is lost. A database that never answers (a listening socket that stays silent)
holds a request no longer than the connect timeout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from idp import create_app
from idp.config import KEYRING_CACHE_SECONDS, normalize_database_url
from idp.db import db
from idp.migrate import upgrade
from idp.models import Base
from idp.clients.service import create_client
from idp.tokens.access import issue_access_token
from idp.users.service import create_user
from tests.outage.cluster import PostgresCluster
from tests.support import Process, free_port, invoke_idp, wait_until

CONNECT_TIMEOUT, STATEMENT_TIMEOUT = 2, 3
# The longest any request may take: a connection attempt plus one statement.
SLOWEST = CONNECT_TIMEOUT + STATEMENT_TIMEOUT
RECOVERY = 5  # seconds after the database accepts connections again
# The server's keyring cache under load (the default is KEYRING_CACHE_SECONDS): the first outage must
# outlast it, so a shorter one makes that outage shorter and still proves the JWKS is served from the
# last good snapshot.
LOAD_KEYRING_CACHE_SECONDS = 1
STATIC_TABLES = ("users", "clients", "signing_keys")  # the load never writes these


@pytest.fixture(scope="module")
def cluster():
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def settings(database_url: str, base: str, tmp_path, secrets_config) -> dict:
    return {
        "ISSUER": base,
        "DATABASE_URL": database_url,
        "INSTANCE_DIR": str(tmp_path / "instance"),
        "KEYS_DIR": str(tmp_path / "keys"),
        "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path}/broker.sqlite3",
        "SECRET_KEY": secrets_config["SECRET_KEY"],
        "KEY_ENCRYPTION_KEYS": secrets_config["KEY_ENCRYPTION_KEYS"],
        "DATABASE_CONNECT_TIMEOUT": CONNECT_TIMEOUT,
        "DATABASE_STATEMENT_TIMEOUT": STATEMENT_TIMEOUT,
    }


def environment(values: dict) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("IDP_")}
    for name, value in values.items():
        env[f"IDP_{name}"] = ",".join(value) if isinstance(value, list) else str(value)
    return {**env, "PYTHONUNBUFFERED": "1"}


def provision(values: dict) -> tuple[tuple[str, str], str]:
    """A client_credentials client and a user with a real access token, signed by the server's key."""
    app = create_app(values)
    with app.app_context():
        client, secret = create_client("Machine", grant_types=["client_credentials"], scope="profile")
        user = create_user("outage@example.test", "correct horse battery")
        token = issue_access_token(client_id=client.client_id, subject=user.subject, scope="openid profile", token_version=user.token_version).token
        credentials = (client.client_id, secret)
        db.session.commit()  # what a command would commit at its edge
        db.session.remove()
        db.engine.dispose()
    return credentials, token


def row_counts(url: str) -> dict[str, int]:
    engine = create_engine(normalize_database_url(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return {table.name: connection.scalar(select(func.count()).select_from(table)) for table in Base.metadata.sorted_tables}
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Answer:
    call: str
    status: int | None  # None: no HTTP answer at all
    retry_after: str | None
    seconds: float
    detail: str


class Load:
    """A few threads calling each endpoint in turn, without cookies (so without a session), until stopped."""

    def __init__(self, calls: dict, threads: int = 3):
        self.calls = calls
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                for name, call in self.calls.items():
                    started = time.monotonic()
                    try:
                        response = call(session)
                        answer = Answer(name, response.status_code, response.headers.get("Retry-After"), time.monotonic() - started, response.text[:200])
                    except requests.RequestException as error:
                        answer = Answer(name, None, None, time.monotonic() - started, repr(error))
                    session.cookies.clear()
                    self.answers.append(answer)
                    time.sleep(0.01)


@contextmanager
def requests_held_in_flight(url: str):
    """Lock the clients and users tables until requests of the load wait on them, then yield.

    /token finds its client in the per-process client cache (idp/clients/service.py), so userinfo's
    user lookup is what is sure to wait."""
    engine = create_engine(normalize_database_url(url), poolclass=NullPool)
    holder = engine.connect()
    try:
        holder.execute(text("LOCK TABLE clients, users IN ACCESS EXCLUSIVE MODE"))
        with engine.connect() as watcher:
            waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            wait_until(lambda: watcher.scalar(waiting) > 0, timeout=STATEMENT_TIMEOUT, interval=0.02, what="a request to wait on the lock")
        yield
    finally:
        try:
            holder.close()
        except OperationalError:
            pass  # its backend died with the postmaster
        engine.dispose()


def worker_pids(master: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def test_database_stopped_and_killed_under_load(cluster, tmp_path, secrets_config):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    values = {**settings(cluster.url, base, tmp_path, secrets_config), "KEYRING_CACHE_SECONDS": LOAD_KEYRING_CACHE_SECONDS}
    env = environment(values)
    assert invoke_idp(["init"], env).returncode == 0  # in-process; tests/functional/test_cli.py runs `idp init` for real
    server = Process(["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"], env, tmp_path / "serve.log")
    credentials, access_token = provision(values)  # while the server boots
    bearer = {"Authorization": "Bearer " + access_token}

    def readyz() -> requests.Response:
        try:
            return requests.get(base + "/readyz", timeout=SLOWEST + 5)
        except requests.ConnectionError:
            return requests.Response()  # not listening yet: status_code None

    def token(session: requests.Session) -> requests.Response:
        return session.post(base + "/token", data={"grant_type": "client_credentials"}, auth=credentials, timeout=30)

    calls = {
        "token": token,
        "jwks": lambda s: s.get(base + "/.well-known/jwks.json", timeout=30),
        "discovery": lambda s: s.get(base + "/.well-known/openid-configuration", timeout=30),
        "userinfo": lambda s: s.get(base + "/userinfo", headers=bearer, timeout=30),
        "introspect": lambda s: s.post(base + "/introspect", data={"token": access_token}, auth=credentials, timeout=30),
        # A page that needs the database: a cookieless GET of /login no longer does (no session row for
        # anonymous visitors), while one that brings a session cookie has its session looked up.
        "login": lambda s: s.get(base + "/login", headers={"Cookie": "idp_session=" + "A" * 43}, timeout=30),
    }
    try:
        wait_until(lambda: readyz().status_code == 200, timeout=30, what="idp serve to be ready")
        # One worker may answer before the master has forked the other (a loaded machine).
        wait_until(lambda: len(worker_pids(server.popen.pid)) == 2, timeout=30, what="both workers to be forked")
        workers = worker_pids(server.popen.pid)
        with Load(calls) as load:
            wait_until(lambda: {a.call for a in load.answers if a.status == 200} == set(calls), timeout=30, what="every call to succeed once")
            for outage in ("stop", "kill"):
                before = row_counts(cluster.url)
                if outage == "stop":
                    cluster.stop("fast")
                else:
                    with requests_held_in_flight(cluster.url):
                        cluster.kill_postmaster()
                went_down = time.monotonic()
                wait_until(lambda: readyz().status_code == 503, timeout=15, what="/readyz to report the outage")
                down = readyz()
                assert down.json() == {"status": "unavailable", "database": "unreachable", "broker": "ok"} and down.headers["Retry-After"]
                outage_answers = len(load.answers)
                # The first outage outlasts the keyring cache: the JWKS must come from the last good snapshot.
                lasts = LOAD_KEYRING_CACHE_SECONDS + 1 if outage == "stop" else 0
                wait_until(
                    lambda: sum(a.status == 503 for a in load.answers[outage_answers:]) >= 20 and time.monotonic() - went_down > lasts,
                    timeout=30, what="the load to meet the outage",
                )
                cluster.start()
                back = time.monotonic()
                wait_until(lambda: token(requests.Session()).status_code == 200, timeout=RECOVERY, interval=0.05, what=f"/token to recover after the {outage}")
                assert time.monotonic() - back <= RECOVERY
                wait_until(lambda: readyz().status_code == 200, timeout=RECOVERY, what="/readyz to recover")
                after = row_counts(cluster.url)
                assert all(after[table] >= count for table, count in before.items()), (before, after)
                assert all(after[table] == before[table] for table in STATIC_TABLES)
            recovered = len(load.answers)
            wait_until(lambda: {a.call for a in load.answers[recovered:] if a.status == 200} == set(calls), timeout=RECOVERY, what="every call to succeed again")
        assert worker_pids(server.popen.pid) == workers and server.popen.poll() is None, "a server process was restarted"
    finally:
        server.stop()

    unavailable = [a for a in load.answers if a.status == 503]
    assert {a.call for a in unavailable} >= {"token", "userinfo", "introspect", "login"}, sorted({(a.call, a.status) for a in load.answers})
    assert [a for a in load.answers if a.status is None or a.status >= 500 and a.status != 503] == []
    assert [a for a in unavailable if not a.retry_after] == []
    assert [a for a in load.answers if a.call in ("jwks", "discovery") and a.status != 200] == []
    assert max(a.seconds for a in load.answers) < SLOWEST
    for answer in unavailable:
        if answer.call == "login":
            assert answer.detail.startswith("<!doctype html>")
        else:
            assert json.loads(answer.detail)["error"] == "temporarily_unavailable"
    assert [a for a in load.answers if a.status not in (200, 503)] == []
    log = server.log()
    assert "Traceback" not in log
    # Logged once per outage and gunicorn worker, with a count when it ends; not once per request.
    started = log.count("database unavailable (")
    assert 2 <= started <= 2 * 2 * 2 < len(unavailable), log[-3000:]
    assert "database is back after" in log
    assert "serving the keyring as loaded" in log


def test_a_database_that_never_answers_holds_a_request_no_longer_than_the_connect_timeout(secrets_config, tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # accepts into the backlog, never reads or answers: a blackholed database
    try:
        values = settings(f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/postgres", "http://localhost", tmp_path, secrets_config)
        app = create_app({**values, "TESTING": True})
        client = app.test_client()
        # A first request that needs no database pays the app's one-time set-up outside the timed
        # ones below, which then measure the database wait (under load that set-up took seconds).
        assert client.get("/healthz").status_code == 200
        asks = {
            "token": lambda test_client: test_client.post("/token", data={"grant_type": "client_credentials"}, auth=("machine", "secret")),
            "readyz": lambda test_client: test_client.get("/readyz"),
            "jwks": lambda test_client: test_client.get("/.well-known/jwks.json"),
        }
        # Each waits on its own connection attempt: asked at once, they cost one connect timeout, not three.
        answered = timed_at_once(app, asks)
        for name in ("token", "readyz"):
            response, seconds = answered[name]
            assert CONNECT_TIMEOUT - 0.5 <= seconds < SLOWEST, (name, seconds)
            assert response.status_code == 503 and response.headers["Retry-After"]
        assert answered["readyz"][0].get_json()["database"] == "unreachable"
        # No keyring was ever loaded: the JWKS has nothing to serve from memory.
        assert answered["jwks"][0].get_json()["error"] == "temporarily_unavailable"
    finally:
        silent.close()


def timed_at_once(app, asks: dict) -> dict:
    """Run each `ask(test_client)` on a thread of its own, all at once; each one's response and seconds taken."""
    answered: dict = {}

    def run(name, ask) -> None:
        started = time.monotonic()
        response = ask(app.test_client())
        answered[name] = (response, time.monotonic() - started)

    threads = [threading.Thread(target=run, args=item) for item in asks.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SLOWEST + 30)
    assert set(answered) == set(asks), f"no answer to {set(asks) - set(answered)}"
    return answered


class Clock:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def test_the_jwks_is_served_from_memory_only_while_the_snapshot_is_younger_than_the_lead_time_allows(cluster, tmp_path, secrets_config):
    from idp.keyring.service import _KeyringCache, ensure_keys, stale_limit

    values = {**settings(cluster.url, "http://localhost", tmp_path, secrets_config), "TESTING": True, "JWKS_MAX_AGE": 60, "CLOCK_SKEW": 10, "KEY_ROTATION_LEAD_TIME": 300}
    app = create_app(values)
    upgrade(app)
    with app.app_context():
        ensure_keys()
        db.session.remove()
    clock = Clock()
    app.extensions["idp.keyring_cache"] = _KeyringCache(clock=clock)
    client = app.test_client()
    served = client.get("/.well-known/jwks.json").data
    limit = stale_limit(app.config)
    assert limit == 300 - 60 - 10
    cluster.stop("fast")
    try:
        for age in (KEYRING_CACHE_SECONDS, limit - 1):
            clock.value = 1000.0 + age
            response = client.get("/.well-known/jwks.json")
            assert response.status_code == 200 and response.data == served
        clock.value = 1000.0 + limit
        response = client.get("/.well-known/jwks.json")
        assert response.status_code == 503 and response.get_json()["error"] == "temporarily_unavailable"
    finally:
        cluster.start()
    # Back: reloaded from the database, served again.
    assert client.get("/.well-known/jwks.json").data == served
    with app.app_context():
        db.engine.dispose()


def test_a_connection_that_dies_after_the_last_query_cannot_fail_the_response(cluster, tmp_path, secrets_config):
    app = create_app({**settings(cluster.url, "http://localhost", tmp_path, secrets_config), "TESTING": True})
    killer = create_engine(normalize_database_url(cluster.url), poolclass=NullPool)

    def read_then_lose_the_connection():
        # The request's transaction is open when its backend is terminated, as when the
        # postmaster is killed while a view does work that needs no database.
        pid = db.session.scalar(text("SELECT pg_backend_pid()"))
        with killer.connect() as connection:
            assert connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return "done"

    app.add_url_rule("/test-lost-connection", view_func=read_then_lose_the_connection)
    try:
        # The teardown's rollback meets the dead connection; the test client would raise it.
        response = app.test_client().get("/test-lost-connection")
        assert response.status_code == 200 and response.text == "done"
        assert app.test_client().get("/readyz").get_json()["database"] == "ok"
    finally:
        killer.dispose()
        with app.app_context():
            db.engine.dispose()


def test_a_pooled_connection_the_server_closed_is_replaced_before_a_request_uses_it(cluster, tmp_path, secrets_config):
    app = create_app({**settings(cluster.url, "http://localhost", tmp_path, secrets_config), "TESTING": True})
    killer = create_engine(normalize_database_url(cluster.url), poolclass=NullPool)
    app.add_url_rule("/test-backend", view_func=lambda: str(db.session.scalar(text("SELECT pg_backend_pid()"))))
    try:
        first = app.test_client().get("/test-backend")
        assert first.status_code == 200
        # Its backend ends while the connection idles in the pool, as in a restart or a killed backend.
        # Autocommit: within one transaction pg_stat_activity is one snapshot, and would never change.
        with killer.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            assert connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": int(first.text)})
            still = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
            wait_until(lambda: connection.scalar(still, {"pid": int(first.text)}) == 0, timeout=10, what="the backend to exit")
        second = app.test_client().get("/test-backend")
        assert second.status_code == 200 and second.text != first.text
    finally:
        killer.dispose()
        with app.app_context():
            db.engine.dispose()


def test_a_statement_waiting_on_a_lock_is_cancelled_by_the_statement_timeout(cluster, tmp_path, secrets_config):
    app = create_app({**settings(cluster.url, "http://localhost", tmp_path, secrets_config), "TESTING": True, "DATABASE_STATEMENT_TIMEOUT": 1})
    upgrade(app)
    engine = create_engine(normalize_database_url(cluster.url), poolclass=NullPool)
    try:
        with engine.connect() as holder:
            holder.execute(text("LOCK TABLE clients, users IN ACCESS EXCLUSIVE MODE"))
            answered: list = []
            started = time.monotonic()
            # In a thread, so that without a timeout the test fails instead of waiting on its own lock.
            asking = threading.Thread(target=lambda: answered.append(app.test_client().post("/token", data={"grant_type": "client_credentials"}, auth=("machine", "secret"))))
            asking.start()
            asking.join(timeout=SLOWEST + 5)
            waited = time.monotonic() - started
        asking.join()
        assert 1 <= waited < 1 + CONNECT_TIMEOUT
        assert answered[0].status_code == 503 and answered[0].get_json()["error"] == "temporarily_unavailable"
    finally:
        engine.dispose()
        with app.app_context():
            db.engine.dispose()


def test_every_worker_serves_the_jwks_through_an_outage_that_began_before_its_first_request(cluster, tmp_path, secrets_config):
    """`idp serve` loads the keyring before it forks: no worker is left without a snapshot to serve."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = environment(settings(cluster.url, base, tmp_path, secrets_config))
    assert invoke_idp(["init"], env).returncode == 0
    server = Process(["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"], env, tmp_path / "serve.log")
    try:
        def up() -> bool:
            try:
                return requests.get(base + "/healthz", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(up, timeout=60, what="idp serve to answer /healthz")  # /healthz reads no key
        cluster.stop("fast")
        # New connections each time, so both workers answer (gunicorn hands each to whichever accepts).
        answers = [requests.get(base + "/.well-known/jwks.json", headers={"Connection": "close"}, timeout=SLOWEST + 5)
                   for _ in range(30)]
        assert [answer.status_code for answer in answers] == [200] * 30
        assert len({answer.content for answer in answers}) == 1 and answers[0].json()["keys"]
    finally:
        server.stop()
        cluster.start()
