"""Background work is never lost: real worker, beat and web processes on PostgreSQL and a private
redis-server, killed (SIGKILL) or cut off from the broker at the moments that used to lose work.

PostgreSQL only: these are the production shape (docker-compose.yml), and each scenario costs tens
of seconds; the outbox itself is tested on every backend in test_outbox.py.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests
from sqlalchemy import select

from idp.db import db
from idp.jobs.models import JobRun
from idp.jobs.service import INTERRUPTED
from idp.models import Client, OutboxMessage, User, UserSession
from idp.sessions.service import end_session
from idp.tokens.refresh import start_family
from tests.conftest import POSTGRES_URL
from tests.functional.test_backchannel import session_with_grant, verified_claims
from tests.oidc.flow import csrf_token
from tests.support import Process, Receiver, free_port, wait_until
from tests.test_deployment import DEPLOY_ENV, load_compose

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", [
        pytest.param("postgresql", marks=pytest.mark.skipif(not POSTGRES_URL, reason="PostgreSQL is not configured (CI requires it)")),
    ], indirect=True),
]

PASSWORD = "correct horse battery"
# The promise: delivered within a minute of the worker (or the broker) being back.
RECOVERY_SECONDS = 60


class RedisServer:
    """A private redis-server on its own port, without persistence: stopping it loses its queues."""

    def __init__(self, directory: Path):
        self.port, self.directory = free_port(), directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.popen: subprocess.Popen | None = None

    def start(self) -> None:
        self.popen = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                return redis.Redis.from_url(self.url, socket_timeout=1).ping()
            except redis.ConnectionError:
                return False

        wait_until(answers, timeout=20, what="redis-server to answer")

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(timeout=20)


@pytest.fixture
def broker(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def config(config, broker):
    """Everything (this process, `idp` subprocesses) on the private broker."""
    return {**config, "CELERY_BROKER_URL": broker.url}


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def stuck_receiver():
    running = Receiver(stall=1)  # the first delivery hangs, as a stuck relying party does
    yield running
    running.close()


@pytest.fixture
def processes():
    """Every process a test starts, stopped at the end."""
    started: list[Process] = []
    yield started
    Process.stop_all(started)


def start(processes: list, args: list[str], env: dict, log: Path, ready: str, module: str = "idp") -> Process:
    """Start a process; `ready(process)` waits for the line that says it is up."""
    process = Process(args, env, log, module=module)
    processes.append(process)
    process.ready_line = ready
    return process


def ready(*started: Process) -> None:
    """Wait until every process has logged its ready line (they start in parallel)."""
    for process in started:
        wait_until(lambda: process.ready_line in process.log() or process.popen.poll() is not None, timeout=60,
                   what=f"{process.popen.args[3]} to start")
        assert process.popen.poll() is None, process.log()


def outbox() -> list[OutboxMessage]:
    db.session.remove()
    return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def runs(job: str) -> list[JobRun]:
    db.session.remove()
    return list(db.session.scalars(select(JobRun).where(JobRun.job == job).order_by(JobRun.id)))


def test_a_worker_killed_mid_delivery_and_mid_job_loses_neither(app, idp_env, tmp_path, processes, stuck_receiver, make_user, make_client):
    receiver = stuck_receiver
    """SIGKILL the worker while it holds a stalled back-channel delivery and a purge in its middle."""
    user = make_user()
    rp, _ = make_client(backchannel_logout_uri=receiver.url)
    sid = session_with_grant(app, user.id, rp.id)
    marker, control = tmp_path / "fault-marker", tmp_path / "fault-control"
    marker.write_text("")
    control.write_text("DELETE")  # the purge's first delete: its run is already recorded as running
    faulty_env = {**idp_env, "FAULT_MARKER": str(marker), "FAULT_CONTROL": str(control), "FAULT_TASK": "idp.purge", "PYTHONPATH": os.getcwd()}
    worker = start(processes, ["worker", "--loglevel", "INFO", "--concurrency", "2"], faulty_env, tmp_path / "worker-1.log", "ready",
                   module="tests.keys.faulty_worker")
    ready(worker, start(processes, ["beat", "--loglevel", "INFO"], idp_env, tmp_path / "beat.log", "beat: Starting"))

    with app.app_context():
        end_session(db.session.scalar(select(UserSession).where(UserSession.sid == sid)), reason="logout")
        db.session.commit()
        wait_until(lambda: receiver.stalled, timeout=30, what="the worker to be stuck delivering")
        app.extensions["celery"].send_task("idp.purge")
        wait_until(lambda: "PAUSED" in marker.read_text(), timeout=30, what="the purge to pause mid-run")
        assert [run.outcome for run in runs("purge")] == ["running"]
        worker.kill()  # the whole worker, both tasks in hand, unacknowledged
        assert receiver.tokens == [] and outbox()[0].done_at is None

        ready(start(processes, ["worker", "--loglevel", "INFO", "--concurrency", "1"], idp_env, tmp_path / "worker-2.log", "ready"))
        back_at = time.monotonic()

        def recovered() -> bool:
            return bool(receiver.tokens) and outbox()[0].outcome == "delivered" and [r.outcome for r in runs("purge")][-1:] == ["succeeded"]

        wait_until(recovered, timeout=RECOVERY_SECONDS, interval=0.5, what="the delivery and the purge to be redone")
        assert time.monotonic() - back_at < RECOVERY_SECONDS
        killed_run, rerun = runs("purge")
        assert (killed_run.outcome, killed_run.error) == ("failed", INTERRUPTED)
        assert rerun.outcome == "succeeded" and rerun.started_at >= killed_run.finished_at
        claims = verified_claims(app, receiver.tokens[0])
        assert (claims["sid"], claims["sub"], claims["aud"]) == (sid, user.subject, rp.client_id)
        assert outbox()[0].attempts == 2 and len(receiver.tokens) == 1  # the stalled attempt, then one delivery


def test_a_worker_that_loses_the_broker_mid_delivery_reconnects_and_delivers(
        app, idp_env, broker, tmp_path, processes, stuck_receiver, make_user, make_client):
    """Redis goes away while the worker holds an unacknowledged task: the worker reconnects and delivers.

    Celery 5.7's worker exited here instead ("Unrecoverable error: AttributeError: 'NoneType' object
    has no attribute 'hostname'", from closing a connection it had already collected).
    """
    receiver = stuck_receiver
    user = make_user()
    rp, _ = make_client(backchannel_logout_uri=receiver.url)
    sid = session_with_grant(app, user.id, rp.id)
    worker = start(processes, ["worker", "--loglevel", "INFO", "--concurrency", "2"], idp_env, tmp_path / "worker.log", "ready")
    ready(worker, start(processes, ["beat", "--loglevel", "INFO"], idp_env, tmp_path / "beat.log", "beat: Starting"))

    with app.app_context():
        end_session(db.session.scalar(select(UserSession).where(UserSession.sid == sid)), reason="logout")
        db.session.commit()
        wait_until(lambda: receiver.stalled, timeout=30, what="the worker to be stuck delivering")
        broker.stop()  # the delivery's task is in the worker's hands, not acknowledged
        wait_until(lambda: "Connection to broker lost" in worker.log() or worker.popen.poll() is not None, timeout=30,
                   what="the worker to notice the broker is gone")
        broker.start()
        receiver.release.set()  # the stuck attempt ends unanswered; the next one is answered
        back_at = time.monotonic()
        wait_until(lambda: outbox()[0].outcome == "delivered" or worker.popen.poll() is not None, timeout=RECOVERY_SECONDS,
                   interval=0.5, what="the delivery to be done once the broker is back")
        assert worker.popen.poll() is None, worker.log()[-3000:]
        assert "Unrecoverable error" not in worker.log()
        assert time.monotonic() - back_at < RECOVERY_SECONDS
        claims = verified_claims(app, receiver.tokens[0])
        assert (claims["sid"], claims["sub"]) == (sid, user.subject) and len(receiver.tokens) == 1


def compose_processes(database_url: str, broker_url: str, secrets: dict, state: Path) -> tuple[dict[str, list[str]], dict[str, dict], str]:
    """The web, worker and beat commands and environments of docker-compose.yml, pointed at this machine.

    Only what the container's network or the operator's .env would give differently changes: the
    database and broker addresses, the secrets, the issuer, the published port, and the state
    folders the image's environment names (here under `state`, which does not exist).
    """
    services = load_compose(DEPLOY_ENV)["services"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    commands, envs = {}, {}
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("IDP_")}
    for name in ("web", "worker", "beat"):
        command = [str(part) for part in services[name]["command"]]
        assert command[0] == "idp"
        if name == "web":
            command[command.index("--port") + 1] = str(port)
        env = {**inherited, **{key: str(value) for key, value in services[name]["environment"].items()}}
        env.update(
            IDP_DATABASE_URL=database_url, IDP_CELERY_BROKER_URL=broker_url, IDP_ISSUER=base,
            IDP_SECRET_KEY=secrets["SECRET_KEY"], IDP_KEY_ENCRYPTION_KEYS=",".join(secrets["KEY_ENCRYPTION_KEYS"]),
            # The image's ENV (Dockerfile): state folders under its home; nothing creates them on this host.
            IDP_INSTANCE_DIR=str(state / "instance"), IDP_KEYS_DIR=str(state / "keys"), PYTHONUNBUFFERED="1",
        )
        commands[name], envs[name] = command[1:], env
    return commands, envs, base


def sign_out_on_the_web(base: str, email: str, attach) -> requests.Response:
    """Sign in at /login like a browser, then press "Sign out everywhere" on /account."""
    browser = requests.Session()
    login = browser.get(base + "/account", timeout=10)
    assert "/login" in login.url, login.url
    signed_in = browser.post(login.url, data={"username": email, "password": PASSWORD, "csrf_token": csrf_token(login.text), "next": "/account"}, timeout=10)
    assert signed_in.status_code == 200 and email in signed_in.text, signed_in.status_code
    attach()  # the session now takes part in a relying party's grant
    page = browser.get(base + "/account", timeout=10)
    return browser.post(base + "/account/sign-out-everywhere", data={"csrf_token": csrf_token(page.text)}, timeout=10, allow_redirects=False)


class BlackHole:
    """A TCP port that accepts connections and never answers: a broker that hangs."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.socket.getsockname()[1]}/0"

    def close(self):
        self.socket.close()


def test_fresh_host_processes_lose_nothing_to_a_broker_outage_or_a_kill_after_commit(
        app, database_url, broker, secrets_config, tmp_path, processes, receiver, make_user, make_client):
    state = tmp_path / "var-lib-idp"
    commands, envs, base = compose_processes(database_url, broker.url, secrets_config, state)
    rp, _ = make_client(backchannel_logout_uri=receiver.url)
    cli_user, web_user, killed_user = (make_user(email=f"{who}@example.com", password=PASSWORD) for who in ("cli", "web", "killed"))
    for user in (cli_user, killed_user):
        session_with_grant(app, user.id, rp.id)
    assert not state.exists()
    web = start(processes, commands["web"], envs["web"], tmp_path / "web.log", "Booting worker")
    worker = start(processes, commands["worker"], envs["worker"], tmp_path / "worker.log", "ready")
    beat = start(processes, commands["beat"], envs["beat"], tmp_path / "beat.log", "beat: Starting")

    # 1. Meanwhile, a CLI killed between its commit and its publish: the row is there, nothing published.
    hole = BlackHole()
    cli = subprocess.Popen([sys.executable, "-m", "idp", "users", "sign-out", killed_user.email],
                           env={**envs["worker"], "IDP_CELERY_BROKER_URL": hole.url}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with app.app_context():
            # Beside three starting services on a loaded machine the CLI's start alone can take
            # tens of seconds; the wait ends at the commit, so only a failure waits the whole of it.
            wait_until(lambda: outbox() or cli.poll() is not None, timeout=120, interval=0.02, what="the sign-out to commit")
    finally:
        cli.kill()  # also when the wait failed: a CLI left running would sign out in a later test's database
        hole.close()
    assert cli.wait() == -signal.SIGKILL, "the CLI finished before it could be killed after its commit"

    ready(web, worker, beat)
    wait_until(lambda: requests.get(base + "/healthz", timeout=2).ok, timeout=30, what="web to answer")
    # Beat made its state folder on this fresh host and keeps its schedule there.
    wait_until(lambda: list((state / "instance").glob("celerybeat-schedule*")), timeout=30, what="beat's schedule file")

    # 2. The broker goes down; a sign-out on the CLI and one on the web, at the same time.
    broker.stop()
    cli = subprocess.Popen([sys.executable, "-m", "idp", "users", "sign-out", cli_user.email], env=envs["worker"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def attach_web_session():
        with app.app_context():
            row = db.session.scalar(select(UserSession).where(UserSession.user_id == web_user.id))
            start_family(client=db.session.get(Client, rp.id), user=db.session.get(User, web_user.id), scope="openid", sid=row.sid)
            db.session.commit()

    answer = sign_out_on_the_web(base, web_user.email, attach_web_session)
    assert answer.status_code == 200 and "signed out" in answer.text.lower(), answer.status_code
    stdout, stderr = cli.communicate(timeout=120)  # as long as the first CLI may take (above)
    assert cli.returncode == 0, stderr
    assert f"signed {cli_user.email} out everywhere" in stdout
    assert stderr.count("the task broker is unreachable") == 1, stderr
    wait_until(lambda: "the task broker is unreachable" in web.log(), timeout=30, what="the web to log the outage")
    with app.app_context():
        kept = {m.payload["sub"]: m.done_at for m in outbox()}
        assert (kept[cli_user.subject], kept[web_user.subject]) == (None, None) and len(kept) == 3

    # 3. The broker is back, empty: within a minute, without restarting anything, all three arrive.
    broker.start()
    back_at = time.monotonic()
    with app.app_context():
        wait_until(lambda: all(m.outcome == "delivered" for m in outbox()), timeout=RECOVERY_SECONDS, interval=0.5, what="every kept logout to be delivered")
        assert time.monotonic() - back_at < RECOVERY_SECONDS
        subjects = sorted(verified_claims(app, token)["sub"] for token in receiver.tokens)
    assert subjects == sorted(u.subject for u in (killed_user, cli_user, web_user))
    assert all(process.popen.poll() is None for process in (web, worker, beat))
    assert web.log().count("the task broker is unreachable") == 1
