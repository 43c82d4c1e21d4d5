"""The `idp` command: thin wrappers over the same service functions the web app and tasks use.

Errors are one line on stderr with exit status 2; nothing is written when input is refused.
"""

from __future__ import annotations

import atexit
import gc
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from functools import wraps
from pathlib import Path
from urllib.parse import urlsplit

import click
from flask import Flask
from sqlalchemy.exc import IntegrityError, OperationalError

from idp import create_app
from idp.audit.actors import Actor
from idp.clients.service import create_client, list_clients, require_client, update_client
from idp.config import ConfigError, generate_key_encryption_key, load
from idp.db import db as database, unit_of_work  # `db` is the command group below
from idp.errors import IdpError
from idp.keyring.service import ensure_keys, load_cache as load_keyring_cache
from idp.metrics import use_multiprocess_storage
from idp.migrate import upgrade
from idp.onboarding.service import invite, send_verification
from idp.serving import hand_over_master_signals
from idp.signout import disable_user, set_password, sign_out_everywhere
from idp.users.service import create_user, list_users, require_user

EXIT_USAGE = 2


class IdpGroup(click.Group):
    """A click group that turns the IdP's own errors into one line and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ConfigError, IdpError) as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(EXIT_USAGE)
        except OperationalError as error:
            # Connection refused, missing file, wrong credentials: say which, not a traceback.
            click.echo(f"error: cannot use the database: {str(error.orig).splitlines()[0]}", err=True)
            ctx.exit(1)
        except IntegrityError as error:
            # A constraint refused the command's commit (a concurrent change): nothing was written.
            click.echo(f"error: nothing was written; the database refused it: {str(error.orig).splitlines()[0]}", err=True)
            ctx.exit(1)


def with_app(require_secrets: bool = True):
    """Run the command inside an app context and one transaction (the command's edge, idp/db.py:
    committed when it returns, rolled back if it fails); the app is passed as the first argument.

    The command returns the lines it reports, printed only once the commit succeeded: a commit
    that fails (a constraint, a locked or lost database) never follows a printed success.
    """

    def decorator(fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            app = create_app(require_secrets=require_secrets)
            with app.app_context(), unit_of_work():
                lines = fn(app, *args, **kwargs)
            for line in lines:
                click.echo(line)

        return wrapper

    return decorator


def _isoformat(value) -> str | None:
    return value.isoformat() if value else None


@click.group(cls=IdpGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """idp: a self-hosted OpenID Connect provider."""


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


@cli.command()
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


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""

    upgrade(create_app(require_secrets=False), revision)
    click.echo("database upgraded")


# --- users --------------------------------------------------------------------------------------


@cli.group()
def users() -> None:
    """End users and admins."""


def read_password_stdin() -> str:
    """The password from standard input: its first line, without the newline."""
    return sys.stdin.readline().rstrip("\r\n")


@users.command("create")
@click.option("--email", required=True)
@click.option("--password-stdin", is_flag=True, required=True, help="Read the password from standard input.")
@click.option("--name", default=None)
@click.option("--admin", is_flag=True, help="Grant admin rights.")
@with_app()
def users_create(app: Flask, email: str, password_stdin: bool, name: str | None, admin: bool) -> list[str]:
    """Create a user."""

    user = create_user(email, read_password_stdin(), name=name, is_admin=admin, actor=Actor.CLI)
    return [json.dumps({"id": user.id, "sub": user.subject, "email": user.email, "is_admin": user.is_admin})]


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def users_list(app: Flask, as_json: bool) -> list[str]:
    """List users."""

    rows = [
        {"id": u.id, "sub": u.subject, "email": u.email, "name": u.name, "is_admin": u.is_admin,
         "disabled": u.is_disabled, "email_verified": u.email_verified, "created_at": _isoformat(u.created_at)}
        for u in list_users()
    ]
    if as_json:
        return [json.dumps(rows, indent=2)]
    lines = []
    for row in rows:
        flags = ",".join(f for f, on in (("admin", row["is_admin"]), ("disabled", row["disabled"])) if on)
        lines.append(f"{row['id']:>6}  {row['email']:<40} {flags}")
    return lines


@users.command("disable")
@click.argument("email")
@with_app()
def users_disable(app: Flask, email: str) -> list[str]:
    """Disable a user: they can no longer sign in, and every token and session they hold dies."""

    disable_user(require_user(email), actor=Actor.CLI)
    return [f"disabled {email}"]


@users.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the new password from standard input.")
@with_app()
def users_set_password(app: Flask, email: str, password_stdin: bool) -> list[str]:
    """Set a user's password; every session and token they hold dies."""

    set_password(require_user(email), read_password_stdin(), actor=Actor.CLI)
    return [f"password set for {email}; all their sessions and tokens are revoked"]


@users.command("invite")
@click.argument("email")
@click.option("--name", default=None)
@with_app()
def users_invite(app: Flask, email: str, name: str | None) -> list[str]:
    """Invite someone by email: the account has no password until they choose one through the mailed link."""
    user = invite(email, name=name, actor=Actor.CLI)
    return [f"invited {user.email}; the invitation link is in the outbox (mailed by the worker)"]


@users.command("resend-verification")
@click.argument("email")
@with_app()
def users_resend_verification(app: Flask, email: str) -> list[str]:
    """Mail a new verification link (the pending new address, or the unverified current one)."""
    link = send_verification(require_user(email), actor=Actor.CLI)
    return [f"verification link for {link.email} queued"]


@users.command("sign-out")
@click.argument("email")
@with_app()
def users_sign_out(app: Flask, email: str) -> list[str]:
    """Sign a user out everywhere: every session, access token and refresh token (offline too)."""

    sign_out_everywhere(require_user(email), actor=Actor.CLI)
    return [f"signed {email} out everywhere"]


# --- clients ------------------------------------------------------------------------------------


@cli.group()
def clients() -> None:
    """OAuth clients (relying parties)."""


@clients.command("create")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True)
@click.option("--public", is_flag=True, help="A public client (no secret; PKCE required).")
@click.option("--grant-type", "grant_types", multiple=True, help="authorization_code, refresh_token, client_credentials.")
@click.option("--scope", default="openid profile email offline_access", show_default=True)
@click.option("--token-endpoint-auth-method", default=None, help="client_secret_basic (default), client_secret_post or none.")
@click.option("--skip-consent", is_flag=True, help="First-party client: no consent page.")
@click.option("--no-pkce", is_flag=True, help="Let a confidential client omit PKCE.")
@click.option("--backchannel-logout-uri", default=None)
@click.option("--id-token-alg", default="RS256", show_default=True, type=click.Choice(["RS256", "ES256"]))
@click.option("--id-token-claims", default="standard", show_default=True, type=click.Choice(["standard", "minimal"]),
              help="standard: the ID token carries the profile and email claims granted; minimal: only sub and sign-in facts.")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def clients_create(app: Flask, name, redirect_uris, post_logout_redirect_uris, public, grant_types, scope,
                   token_endpoint_auth_method, skip_consent, no_pkce, backchannel_logout_uri, id_token_alg,
                   id_token_claims, as_json) -> list[str]:
    """Register a client; its secret is printed once and never stored."""

    client, secret = create_client(
        name,
        redirect_uris=list(redirect_uris),
        post_logout_redirect_uris=list(post_logout_redirect_uris),
        public=public,
        grant_types=list(grant_types) or None,
        scope=scope,
        token_endpoint_auth_method=token_endpoint_auth_method,
        require_pkce=not no_pkce,
        skip_consent=skip_consent,
        backchannel_logout_uri=backchannel_logout_uri,
        id_token_signed_response_alg=id_token_alg,
        id_token_claims=id_token_claims,
        actor=Actor.CLI,
    )
    result = {"client_id": client.client_id, "name": client.name}
    if secret:
        result["client_secret"] = secret
    if as_json:
        return [json.dumps(result)]
    lines = [f"client_id:     {client.client_id}"]
    if secret:
        lines.append(f"client_secret: {secret}   (shown once; store it now)")
    return lines


@clients.command("update")
@click.argument("client_id")
@click.option("--name", default=None)
@click.option("--scope", default=None, help="Space-separated scopes, replacing the registered ones.")
@click.option("--id-token-claims", default=None, type=click.Choice(["standard", "minimal"]),
              help="standard: the ID token carries the profile and email claims granted; minimal: only sub and sign-in facts.")
@with_app()
def clients_update(app: Flask, client_id: str, name, scope, id_token_claims) -> list[str]:
    """Change a registered client's name, scopes or ID token claims."""
    wanted = {"name": name, "scope": scope, "id_token_claims": id_token_claims}
    changed = update_client(require_client(client_id), actor=Actor.CLI, **{k: v for k, v in wanted.items() if v is not None})
    return [f"updated {client_id}: {', '.join(changed)}" if changed else f"nothing changed for {client_id}"]


@clients.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def clients_list(app: Flask, as_json: bool) -> list[str]:
    """List clients."""

    rows = [
        {"client_id": c.client_id, "name": c.name, "public": c.is_public, "redirect_uris": c.redirect_uris,
         "grant_types": c.grant_types, "scope": c.scope, "token_endpoint_auth_method": c.token_endpoint_auth_method}
        for c in list_clients()
    ]
    if as_json:
        return [json.dumps(rows, indent=2)]
    return [f"{row['client_id']}  {'public' if row['public'] else 'confidential':<12} {row['name']}" for row in rows]


# --- processes ----------------------------------------------------------------------------------


def default_bind() -> tuple[str, int]:
    """Host and port taken from the issuer when it is a loopback URL (the embedded default)."""

    parts = urlsplit(load()["ISSUER"])
    return "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


@cli.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default: the issuer's).")
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
def serve(host: str | None, port: int | None, workers: int, threads: int) -> None:
    """Run the web app under gunicorn."""
    # Before gunicorn forks: every worker writes its counts under this folder and `/metrics` sums
    # them. Ours alone, and removed when the server stops.
    metrics_dir, owner = tempfile.mkdtemp(prefix="idp-metrics-"), os.getpid()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    use_multiprocess_storage()
    # A stop before gunicorn installs its own handlers still goes through `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        run_gunicorn(host, port, workers, threads)
    finally:
        # gunicorn's workers are forks that leave through here too: only the master removes it.
        if os.getpid() == owner:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def run_gunicorn(host: str | None, port: int | None, workers: int, threads: int) -> None:
    """Serve the app under gunicorn until it is stopped."""
    from gunicorn.app.base import BaseApplication

    default_host, default_port = default_bind()
    app = create_app()  # fail fast on bad configuration, before gunicorn forks
    with app.app_context():
        # Every worker inherits a keyring snapshot, so the JWKS and offline verification outlast
        # an outage that begins before a worker's first request (idp/keyring/service.py).
        load_keyring_cache()
        database.session.remove()
        database.engine.dispose()  # no connection is shared with the forks
    if app.config["METRICS"]:
        logging.getLogger("idp.serve").info("metrics of every worker are summed from %s", os.environ["PROMETHEUS_MULTIPROC_DIR"])

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host or default_host}:{port or default_port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            # gthread, but a thread only ever takes a complete request head: slow clients cannot starve it.
            self.cfg.set("worker_class", "idp.serving.HeadBufferingWorker")
            self.cfg.set("post_fork", hand_over_master_signals)  # a stop during a worker's boot is not lost
            self.cfg.set("accesslog", "-")
            self.cfg.set("logger_class", "idp.logs.GunicornLogger")
            # Forwarded headers are believed only as IDP_TRUSTED_PROXIES says (idp/proxies.py).
            self.cfg.set("forwarded_allow_ips", "")
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn 25+ opens one control socket per user by default; replicas would share it.
                self.cfg.set("control_socket_disable", True)

        def load(self):
            return app

    # The workers are forks of this process: what exists now (the imported code, the app) is
    # frozen out of the collector, so a worker's collections never touch, and so never copy,
    # the pages it shares with the master (the gc.freeze documentation's advice for pre-fork servers).
    gc.freeze()
    Server().run()


@cli.command()
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--concurrency", default=2, show_default=True, type=int)
def worker(loglevel: str, concurrency: int) -> None:
    """Run a Celery worker (embedded broker by default, Redis when IDP_CELERY_BROKER_URL says so)."""
    app = create_app()
    app.extensions["celery"].worker_main(["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}", "--without-mingle", "--without-gossip"])


@cli.command()
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--memory-schedule", is_flag=True, help="Keep the schedule in memory, not in a file: every job is due once at start.")
def beat(loglevel: str, memory_schedule: bool) -> None:
    """Run the Celery beat scheduler (one per deployment)."""
    app = create_app()
    # Beat keeps its schedule state in the instance folder, which nothing else needs on PostgreSQL:
    # a fresh host may not have it yet.
    try:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise click.ClickException(f"cannot create IDP_INSTANCE_DIR {app.instance_path} for the beat schedule: {error.strerror}") from None
    # `idp dev` uses the in-memory schedule: a Ctrl-C while beat is still opening its schedule file
    # makes celery's SIGTERM handler re-enter that half-done set-up and print a traceback.
    scheduler = ["--scheduler", "celery.beat:Scheduler"] if memory_schedule else []
    app.extensions["celery"].start(["beat", f"--loglevel={loglevel}", *scheduler])


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


@cli.command()
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


# --- commands owned by their domains --------------------------------------------------------------

from idp.jobs.cli import jobs, purge  # noqa: E402
from idp.keyring.cli import keys  # noqa: E402

for command in (keys, jobs, purge):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    # At exit, what is alive is frozen out of the collector: the interpreter's final collections
    # then skip the app's ~140,000 objects instead of walking them, about 0.5 s of CPU per `idp`
    # process (and per forked gunicorn worker). Exit handlers still all run; objects are still
    # freed by reference count as the modules are cleared; only cyclic garbage is left to the OS.
    atexit.register(gc.freeze)
    cli(prog_name="idp")
