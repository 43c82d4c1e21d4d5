"""Shared fixtures: the app on every configured database backend, real servers, a real worker.

Backends: SQLite always; PostgreSQL too when IDP_TEST_DATABASE_URL is set. Redis-backed tests use
IDP_TEST_REDIS_URL. With CI set (or IDP_TEST_REQUIRE_SERVICES=1) a missing service is a failure,
never a skip.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis
import requests
from flask import Flask
from jinja2 import BytecodeCache
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Engine

from idp import create_app
from idp.config import SETTINGS, generate_key_encryption_key, normalize_database_url
from idp.db import db
from idp.models import Base, SigningKey
from idp.tasks import outbox
from tests.support import Process, commit_app_contexts, free_port, share_url_builders, wait_until

# Under pytest-xdist each worker ("gw0", "gw1", ...) gets its own PostgreSQL database and Redis
# database, so the schema resets and Celery queues of one worker never touch another's.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


CHEAP_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 8, "ARGON2_PARALLELISM": 1}


def _per_worker_redis(url: str | None) -> str | None:
    if not url or not XDIST_WORKER:
        return url
    base, _, index = url.rpartition("/")
    return f"{base}/{int(index or 0) + 1 + int(XDIST_WORKER.removeprefix('gw'))}"


POSTGRES_URL = os.environ.get("IDP_TEST_DATABASE_URL")
SHM = Path("/dev/shm")
REDIS_URL = _per_worker_redis(os.environ.get("IDP_TEST_REDIS_URL"))
REQUIRE_SERVICES = bool(os.environ.get("CI")) or os.environ.get("IDP_TEST_REQUIRE_SERVICES") == "1"
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


def require_service(name: str, available: bool, hint: str | None = None) -> None:
    """Skip a test whose service is absent on a developer machine; fail it in CI."""
    if available:
        return
    message = f"{name} is not configured ({hint or f'set IDP_TEST_{name.upper()}_URL'})"
    if REQUIRE_SERVICES:
        pytest.fail(message + "; CI must run every service-backed test")
    pytest.skip(message)  # a service absent on a developer machine; CI fails above instead


def pytest_configure(config: pytest.Config) -> None:
    share_url_builders()


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_SERVICES and not (POSTGRES_URL and REDIS_URL):
        raise pytest.UsageError("CI needs IDP_TEST_DATABASE_URL and IDP_TEST_REDIS_URL: service-backed tests must not skip")


# --- configuration and schema ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def secrets_config() -> dict:
    """Secrets for the test apps: generated once, never written to the repository."""
    return {"SECRET_KEY": os.urandom(32).hex(), "KEY_ENCRYPTION_KEYS": [generate_key_encryption_key()]}


def _per_worker_postgres(url: str) -> str:
    """The worker's own database next to the configured one (created on first use)."""
    if not XDIST_WORKER:
        return url
    base, _, name = url.rpartition("/")
    own = f"{name.split('?')[0]}_{XDIST_WORKER}"
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        if connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": own}) is None:
            connection.execute(text(f'CREATE DATABASE "{own}"'))
    engine.dispose()
    return f"{base}/{own}"


def _reset_postgres(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_dir(tmp_path_factory) -> Iterator[Path]:
    """Where the SQLite test database lives: tmpfs when the machine has one.

    SQLite syncs the disk on every commit; on a loaded machine's disk that costs about 30 ms, and a
    test commits dozens of times. On tmpfs the same file behaves the same, minus the wait.
    """
    if not SHM.is_dir():
        yield tmp_path_factory.mktemp("db")
        return
    path = Path(tempfile.mkdtemp(prefix="idp-test-db-", dir=SHM))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# The test databases' engines, one per process and set of engine options: every app built on a
# test database shares it (see build_app), so a test reuses the pooled connections of the tests
# before it instead of opening its own (a PostgreSQL connection costs a backend start, 20-50 ms
# on a loaded machine). Other URLs (an outage test's own cluster) get an engine per app as before.
TEST_DATABASES: set[str] = set()
SHARED_ENGINES: dict[str, Engine] = {}
# The connect listeners each shared engine came with; those an app adds later go with the app.
BORN_WITH: dict[Engine, list] = {}
_make_engine = db._make_engine


def _url_key(url) -> str:
    return make_url(url).render_as_string(hide_password=False)


def _shared_engine(bind_key, options: dict, app: Flask) -> Engine:
    if _url_key(options["url"]) not in TEST_DATABASES:
        return _make_engine(bind_key, options, app)
    key = repr((bind_key, sorted((name, repr(value)) for name, value in options.items())))
    if key not in SHARED_ENGINES:
        engine = SHARED_ENGINES[key] = _make_engine(bind_key, options, app)
        BORN_WITH[engine] = list(engine.pool.dispatch.connect.listeners)
    return SHARED_ENGINES[key]


db._make_engine = _shared_engine


def release(app: Flask) -> None:
    """End `app`'s session; close its engine's pool, or for a shared engine drop what `app` hung on it."""
    with app.app_context():
        db.session.remove()
        engine = db.engine
    if engine not in BORN_WITH:
        engine.dispose()
        return
    for listener in list(engine.pool.dispatch.connect.listeners):
        if listener not in BORN_WITH[engine]:
            event.remove(engine, "connect", listener)


# For a test of PostgreSQL's own behaviour (row locks, MultiXacts): it runs on that backend alone.
POSTGRESQL_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
# For a test whose subject does not depend on the database (a page's rendering, a load script).
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request, sqlite_dir, secrets_config) -> str:
    """A migrated database per backend; the schema comes from the migrations, not create_all."""
    from idp.migrate import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{sqlite_dir / 'idp.sqlite3'}"
    else:
        require_service("database", bool(POSTGRES_URL))  # a test may ask for PostgreSQL alone (POSTGRESQL_ONLY)
        url = _per_worker_postgres(POSTGRES_URL)
        _reset_postgres(url)
    migrated = create_app({"DATABASE_URL": url, "TESTING": True, **secrets_config})
    upgrade(migrated)
    with migrated.app_context():
        db.engine.dispose()
    TEST_DATABASES.add(_url_key(normalize_database_url(url)))
    return url


@pytest.fixture(scope="session")
def key_rows(database_url, secrets_config) -> list[dict]:
    """An active and a next key per algorithm, generated once per backend; every test starts with them."""
    from idp.keyring.service import ensure_keys

    app = create_app({"DATABASE_URL": database_url, "TESTING": True, **secrets_config})
    with app.app_context():
        ensure_keys()
        rows = [
            {column.name: getattr(key, column.key) for column in SigningKey.__table__.columns}
            for key in db.session.scalars(db.select(SigningKey))
        ]
        db.session.commit()
    # Also drops the key.created audit events, so the first test of a session starts empty too.
    clean_database(app, rows)
    release(app)
    return rows


@pytest.fixture
def config(database_url, secrets_config, tmp_path) -> dict:
    """The test mapping given to create_app; tests may change it before `app` is built."""
    return {
        "TESTING": True,
        "ISSUER": "http://localhost",
        "DATABASE_URL": database_url,
        "INSTANCE_DIR": str(tmp_path / "instance"),
        "KEYS_DIR": str(tmp_path / "keys"),
        # The same broker as the `idp worker` a test may start, so tasks sent here reach it.
        "CELERY_BROKER_URL": REDIS_URL or f"sqla+sqlite:///{tmp_path}/broker.sqlite3",
        "BACKCHANNEL_RETRY_BASE_SECONDS": 1,
        # The cheapest argon2id (production: OWASP's m=19456 KiB, t=2): hashing a password costs
        # about 0.5 s under load otherwise, and every user a test makes hashes one.
        **CHEAP_ARGON2,
        **secrets_config,
    }


# Children first, so no foreign key is ever violated half-way.
TABLES = list(reversed(Base.metadata.sorted_tables))
# The tables holding a row, in one statement: most tests write to a few tables only.
TABLES_WITH_ROWS = "\nUNION ALL ".join(f"SELECT '{table.name}' WHERE EXISTS (SELECT 1 FROM \"{table.name}\")" for table in TABLES)
KEYS = SigningKey.__table__


def _key_order(row) -> int:
    return row["id"]


def clean_database(app: Flask, key_rows: list[dict]) -> None:
    """Empty every table that holds a row, children first, in one transaction, and leave the
    signing keys as `key_rows` (untouched when the test did not change them).

    Whoever wrote them (this process, a server, a worker), the rows are found by asking the
    database which tables hold any (one round trip); the deletes go as one script (one round trip
    more), and most tests write to a few tables only. The engine's pool stays open (build_app).
    """
    with app.app_context():
        db.session.rollback()
        db.session.remove()
        engine = db.engine
    with engine.connect() as connection:
        written = set(connection.exec_driver_sql(TABLES_WITH_ROWS).scalars())
        keys_kept = False
        if KEYS.name in written:
            kept = sorted((dict(row._mapping) for row in connection.execute(KEYS.select())), key=_key_order)
            keys_kept = kept == sorted(key_rows, key=_key_order)
            if keys_kept:
                written.discard(KEYS.name)
        deletes = [f'DELETE FROM "{table.name}"' for table in TABLES if table.name in written]
        if deletes and connection.dialect.name == "sqlite":
            connection.commit()  # the script runs in a transaction of its own
            connection.connection.dbapi_connection.executescript("BEGIN;\n" + ";\n".join(deletes) + ";\nCOMMIT;")
        elif deletes:
            connection.exec_driver_sql(";\n".join(deletes))
        if not keys_kept:
            connection.execute(KEYS.insert(), key_rows)
        connection.commit()


class SharedTemplateCode(BytecodeCache):
    """Compiled templates shared by every app of this test process (each new app compiles its own).

    Jinja checks each entry against the template source's checksum, so an edited template recompiles.
    """

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        if bucket.key in self._code:
            bucket.bytecode_from_string(self._code[bucket.key])

    def dump_bytecode(self, bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


TEMPLATE_CODE = SharedTemplateCode()


def build_app(config) -> Flask:
    """create_app(config) with the process-wide compiled-template cache, on the shared engine of its test database."""
    built = create_app(config)
    built.jinja_env.bytecode_cache = TEMPLATE_CODE
    commit_app_contexts(built)
    return built


@pytest.fixture
def app(config, key_rows):
    """A fresh app on a clean database holding the pre-generated signing keys."""
    # A test that met a dead broker leaves this process's outbox skipping its after-commit nudges
    # for OUTAGE_PROBE_SECONDS; a later delivery test would then wait for a relay and time out. Its
    # nudge may also still be meeting that broker (seconds, under load), and would mark the outage
    # after the reset: it is waited for first.
    outbox.settle_nudges()
    outbox._outage.update(down=False, probe_at=0.0)
    app = build_app(config)
    yield app
    clean_database(app, key_rows)
    release(app)


@pytest.fixture
def make_app(request, config, key_rows):
    """Build extra apps from the test mapping plus overrides; released afterwards.

    Without the `app` fixture to do it, what they wrote is deleted too.
    """
    made = []

    def make(**overrides):
        extra = build_app({**config, **overrides})
        made.append(extra)
        return extra

    yield make
    on_test_database = [extra for extra in made if _url_key(extra.config["DATABASE_URL"]) in TEST_DATABASES]
    if on_test_database and "app" not in request.fixturenames:
        clean_database(on_test_database[0], key_rows)
    for extra in made:
        release(extra)


@pytest.fixture
def client(app):
    """Flask's test client."""
    return app.test_client()


@pytest.fixture
def app_ctx(app):
    """Run the test body inside the app context (for service-level tests)."""
    with app.app_context():
        yield app


# --- factories ------------------------------------------------------------------------------------


@pytest.fixture
def make_user(app):
    """Create a user: make_user(email=..., password=..., is_admin=...)."""
    from idp.users.service import create_user

    counter = iter(range(1, 1_000_000))

    def make(email: str | None = None, password: str = "correct horse battery", **kwargs):
        with app.app_context():
            user = create_user(email or f"user{next(counter)}@example.com", password, **kwargs)
            db.session.refresh(user)
            db.session.expunge(user)
            return user

    return make


@pytest.fixture
def make_client(app):
    """Register a client: make_client(**create_client kwargs) -> (client, secret)."""
    from idp.clients.service import create_client

    def make(name: str = "Test RP", **kwargs):
        kwargs.setdefault("redirect_uris", ["http://127.0.0.1:9999/callback"])
        with app.app_context():
            registered, secret = create_client(name, **kwargs)
            db.session.refresh(registered)
            db.session.expunge(registered)
            return registered, secret

    return make


# --- real processes -------------------------------------------------------------------------------


@pytest.fixture
def idp_env(config) -> dict[str, str]:
    """Environment for `idp` subprocesses: every setting of the test mapping as an IDP_* variable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("IDP_")}
    for setting in SETTINGS:
        value = config.get(setting.name)
        if value is not None:
            env[setting.env] = ",".join(value) if isinstance(value, list) else str(value)
    env.update(IDP_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def idp_module() -> str:
    """The module servers and workers run as (`python -m idp`); a directory's conftest may wrap it."""
    return "idp"


@pytest.fixture
def start_server(app, idp_env, idp_module, tmp_path) -> Iterator[Callable[..., str]]:
    """Start real `idp serve` processes on free ports; returns each one's base URL (= its issuer).

    `start_server.replicas(count, issuer, **env)` starts several at once (one deployment: their
    issuer is `issuer`, or the first one's URL) and waits for them together.
    """
    started: list[Process] = []

    def launch(issuer: str | None = None, port: int | None = None, **env_overrides: str) -> tuple[Process, str]:
        process, base = launch_server({**idp_env, **env_overrides}, tmp_path, idp_module, issuer, port)
        started.append(process)
        return process, base

    def start(issuer: str | None = None, **env_overrides: str) -> str:
        process, base = launch(issuer, **env_overrides)
        wait_for_server(process, base)
        return base

    def replicas(count: int, issuer: str | None = None, **env_overrides: str) -> list[str]:
        ports = [free_port() for _ in range(count)]
        issuer = issuer or f"http://127.0.0.1:{ports[0]}"
        launched = [launch(issuer, port, **env_overrides) for port in ports]  # every import at once
        for process, base in launched:
            wait_for_server(process, base)
        return [base for _, base in launched]

    start.replicas = replicas  # type: ignore[attr-defined]
    yield start
    Process.stop_all(started)  # every server shuts down at once


def launch_server(env: dict[str, str], log_dir: Path, idp_module: str, issuer: str | None = None, port: int | None = None) -> tuple[Process, str]:
    """Start `idp serve` (two workers) on a free port without waiting; its process and base URL."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    process = Process(["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"], {**env, "IDP_ISSUER": issuer or base},
                      log_dir / f"serve-{port}.log", module=idp_module)
    return process, base


def wait_for_server(process: Process, base: str) -> None:
    """Wait until a started `idp serve` answers /healthz; fail the test at once if it exits."""

    def up() -> bool:
        if process.popen.poll() is not None:
            pytest.fail(f"idp serve exited early:\n{process.log()}")
        try:
            return requests.get(base + "/healthz", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or too loaded to answer in time
            return False

    wait_until(up, timeout=120, interval=0.05, what="idp serve to answer /healthz")  # generous: a loaded machine


@pytest.fixture(scope="session")
def _shared_servers() -> Iterator[dict]:
    """The servers `shared_server` started, by what they were started with; stopped when the session ends."""
    servers: dict[tuple, tuple[Process, str]] = {}
    yield servers
    Process.stop_all([process for process, _ in servers.values()])


@pytest.fixture
def shared_server(app, idp_env, idp_module, tmp_path, tmp_path_factory, _shared_servers) -> Callable[..., str]:
    """shared_server(issuer=None) -> the base URL of a real `idp serve` that later tests reuse.

    A server start costs a second or more of CPU. Tests that leave nothing in a server's memory
    share one per configuration: the database is emptied between tests as usual, and what the
    server caches are rows (the signing keys are re-inserted unchanged, clients get fresh ids).
    Any other setting, a changed `config` included, gets a server of its own. The test's own
    folders (instance, keys) in the environment do not count: the first test's stay in use.
    """

    def start(issuer: str | None = None) -> str:
        settings = sorted((name, value.replace(str(tmp_path), "")) for name, value in idp_env.items() if name.startswith("IDP_"))
        key = (idp_module, issuer, *settings)
        if key not in _shared_servers:
            process, base = launch_server(idp_env, tmp_path_factory.mktemp("shared-serve"), idp_module, issuer)
            _shared_servers[key] = (process, base)
            wait_for_server(process, base)
        process, base = _shared_servers[key]
        if process.popen.poll() is not None:
            pytest.fail(f"the shared idp serve has exited:\n{process.log()}")
        return base

    return start


@pytest.fixture
def live_server(start_server) -> str:
    """One real `idp serve` whose issuer is its own base URL."""
    return start_server()


@pytest.fixture
def celery_worker(app, idp_env, idp_module, tmp_path) -> Iterator[Process]:
    """A real `idp worker` process on Redis (CI) or the embedded broker."""
    empty_broker(app)
    process = Process(["worker", "--loglevel", "INFO", "--concurrency", "1"], idp_env, tmp_path / "worker.log", module=idp_module)
    wait_until(lambda: "ready" in process.log() or process.popen.poll() is not None, timeout=120, what="the Celery worker to be ready")
    if process.popen.poll() is not None:
        pytest.fail(f"worker exited early:\n{process.log()}")
    yield process
    process.stop()
    empty_broker(app)


def empty_broker(app) -> None:
    """Drop every queued and unacknowledged task, so a test's worker runs the test's own tasks only.

    Earlier tests on this pytest worker share its Redis database: a job queued with no worker to
    take it (the admin UI's "run now", a resend) or left unacknowledged by a killed worker would
    otherwise run first and be mistaken for the test's own run.
    """
    celery = app.extensions["celery"]
    celery.control.purge()
    if REDIS_URL and celery.conf.broker_url == REDIS_URL:
        from kombu.transport.redis import Channel

        with redis.Redis.from_url(REDIS_URL) as client:
            client.delete(Channel.unacked_key, Channel.unacked_index_key, Channel.unacked_mutex_key)


@pytest.fixture
def redis_url() -> str:
    """The Redis server for tests that need one (fails in CI when absent)."""
    require_service("redis", bool(REDIS_URL))
    return REDIS_URL
