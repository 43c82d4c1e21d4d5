"""`idp serve`, `idp worker` and `idp beat`: the long-running processes of a deployment.

None of them imports Alembic: the schema is migrated beforehand by `idp init` or `idp db upgrade`.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import click
from gunicorn.app.base import BaseApplication

from idp import create_app
from idp.config import load
from idp.db import db as database
from idp.keyring.service import load_cache as load_keyring_cache
from idp.metrics import use_multiprocess_storage
from idp.serving import hand_over_master_signals


def default_bind() -> tuple[str, int]:
    """Host and port taken from the issuer when it is a loopback URL (the embedded default)."""

    parts = urlsplit(load()["ISSUER"])
    return "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


@click.command()
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


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--concurrency", default=2, show_default=True, type=int)
def worker(loglevel: str, concurrency: int) -> None:
    """Run a Celery worker (embedded broker by default, Redis when IDP_CELERY_BROKER_URL says so)."""
    app = create_app()
    app.extensions["celery"].worker_main(["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}", "--without-mingle", "--without-gossip"])


@click.command()
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
