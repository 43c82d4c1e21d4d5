"""`idp init`, `idp db upgrade` and `idp dev`: the schema, the first keys, and everything at once.

The `idp` group (idp/commands.py) imports this module only when one of these commands runs: it is
the one that imports Alembic (idp/migrate.py). Errors are one line on stderr with exit status 2.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
from flask import Flask

from idp import create_app
from idp.audit.actors import Actor
from idp.commands import cli, main  # noqa: F401  (the `idp` group and entry point, long reached here)
from idp.config import generate_key_encryption_key, load
from idp.db import unit_of_work
from idp.keyring.service import ensure_keys
from idp.migrate import upgrade
from idp.processes import default_bind


# --- set-up -------------------------------------------------------------------------------------


def ensure_local_secrets(app: Flask) -> list[str]:
    """Write KEYS_DIR/secret-key and key-encryption-keys when the environment gives none. Returns files made."""
    keys_dir = Path(app.config["KEYS_DIR"])
    made = []
    wanted = {
        "secret-key": (os.environ.get("IDP_SECRET_KEY"), lambda: os.urandom(32).hex()),
        "key-encryption-keys": (os.environ.get("IDP_KEY_ENCRYPTION_KEYS"), generate_key_encryption_key),
    }
    for name, (from_env, generate) in wanted.items():
        path = keys_dir / name
        if from_env or path.exists():
            continue
        keys_dir.mkdir(parents=True, exist_ok=True)
        # Created with owner-only permissions before anything is written into it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate() + "\n")
        made.append(str(path))
    return made


@click.command()
def init() -> None:
    """Create local secrets (embedded default), the schema and the first signing keys; idempotent."""

    made = ensure_local_secrets(create_app(require_secrets=False))
    for path in made:
        click.echo(
            f"WARNING: generated {path} for the embedded default. Back it up with the database and never "
            "commit it; in production set IDP_SECRET_KEY and IDP_KEY_ENCRYPTION_KEYS instead.",
            err=True,
        )
    app = create_app()
    upgrade(app)
    with app.app_context(), unit_of_work():
        created = ensure_keys(actor=Actor.CLI)
    click.echo(f"database ready: {app.config['DATABASE_URL'].split('@')[-1]}")
    click.echo(f"signing keys: {len(created)} created" if created else "signing keys: already present")


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""

    upgrade(create_app(require_secrets=False), revision)
    click.echo("database upgraded")


# --- `idp dev`: serve, worker and beat together (each defined in idp/processes.py) ------------


# `idp dev` gives each child this long to stop after its one SIGTERM before killing what is left:
# gunicorn's graceful timeout (30 s) and a margin.
DEV_STOP_TIMEOUT = 35
DEV_START_TIMEOUT = 120


def require_free_port(host: str, port: int) -> None:
    """Fail with one line when something already listens on host:port."""
    with socket.socket() as sock:
        # The same option gunicorn binds with, so a port left in TIME_WAIT does not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}; stop what uses it or pass --port") from None


def answers(port: int) -> bool:
    """True once the web server on 127.0.0.1:port answers /healthz with 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def wait_for_server(port: int, web: subprocess.Popen, stop: threading.Event) -> bool:
    """Poll the web server until it answers; False if it exits, a stop is asked for, or time runs out."""
    deadline = time.monotonic() + DEV_START_TIMEOUT
    while time.monotonic() < deadline and web.poll() is None and not stop.is_set():
        if answers(port):
            return True
        stop.wait(0.2)
    return False


def stop_children(children: dict[str, subprocess.Popen]) -> None:
    """Send each running child exactly one SIGTERM, wait for it, then kill whatever is left of its group."""
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + DEV_STOP_TIMEOUT
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:  # the child led its own group: nothing of it (gunicorn or Celery pool processes) may outlive us
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()


@click.command()
@click.option("--port", default=None, type=int, help="Port (default: the issuer's).")
def dev(port: int | None) -> None:
    """Run web, worker and beat together on the embedded defaults; Ctrl-C stops all three."""
    port = port or default_bind()[1]
    require_free_port("127.0.0.1", port)
    init.callback()  # idempotent: secrets, schema, keys
    issuer = load()["ISSUER"]  # init has built the app, so the settings are known to be good: no third build
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    command = [sys.executable, "-m", "idp"]
    # Each child leads a process group of its own, so Ctrl-C (SIGINT to the terminal's foreground
    # group) reaches only this process, which then sends each child exactly one SIGTERM: a second
    # signal on top can deadlock a gunicorn gthread worker in ThreadPoolExecutor.shutdown
    # (cpython#121649) and makes beat print an atexit traceback.
    children = {
        name: subprocess.Popen([*command, *args], process_group=0)
        for name, args in (
            ("serve", ["serve", "--port", str(port)]),
            ("worker", ["worker", "--loglevel", "WARNING"]),
            ("beat", ["beat", "--loglevel", "WARNING", "--memory-schedule"]),
        )
    }
    try:
        if wait_for_server(port, children["serve"], stop):
            click.echo(f"\nidp is running: {issuer}  (discovery: {issuer}/.well-known/openid-configuration)")
            click.echo("Next: create the first admin:\n  echo 'a-long-password' | idp users create --email you@example.com --password-stdin --admin\n")
        while not stop.is_set() and all(child.poll() is None for child in children.values()):
            stop.wait(0.5)
        # A child that died on its own, before anyone asked us to stop, is a failure worth reporting.
        died = [name for name, child in children.items() if child.poll() is not None] if not stop.is_set() else []
    finally:
        stop_children(children)
    if died:
        raise click.ClickException(f"stopped because {', '.join(died)} exited")


