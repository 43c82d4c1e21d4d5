"""Real processes: `idp serve` under gunicorn, a Celery worker, and `idp dev` running all three."""

import os
import signal
import subprocess
import sys

import requests
from sqlalchemy import select

from idp.db import db
from idp.models import JobRun
from tests.support import free_port, wait_until


def test_served_discovery_and_jwks_over_http(start_server):
    base = start_server(issuer="https://login.example.test")
    document = requests.get(base + "/.well-known/openid-configuration", headers={"Host": "attacker.test"}, timeout=5).json()
    assert document["issuer"] == "https://login.example.test"
    jwks = requests.get(base + "/.well-known/jwks.json", timeout=5)
    assert {key["alg"] for key in jwks.json()["keys"]} == {"RS256", "ES256"}
    assert all("d" not in key for key in jwks.json()["keys"])
    assert requests.get(base + "/.well-known/jwks.json", headers={"If-None-Match": jwks.headers["ETag"]}, timeout=5).status_code == 304
    assert requests.delete(base + "/.well-known/jwks.json", timeout=5).status_code == 405
    assert requests.get(base + "/readyz", timeout=5).json()["database"] == "ok"


def test_worker_runs_tasks_from_the_broker(app, celery_worker):
    app.extensions["celery"].send_task("idp.ping")

    def ran() -> bool:
        with app.app_context():
            db.session.remove()
            return db.session.scalar(select(JobRun).where(JobRun.job == "ping")) is not None

    wait_until(ran, timeout=30, what="the worker to run idp.ping")


def test_dev_runs_web_worker_and_beat_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_ISSUER=f"http://127.0.0.1:{port}", IDP_INSTANCE_DIR=str(tmp_path / "instance"), IDP_KEYS_DIR=str(tmp_path / "keys"), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "dev.log", "w")
    dev = subprocess.Popen([sys.executable, "-m", "idp", "dev"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    try:
        def serving() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/.well-known/openid-configuration", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_until(serving, timeout=180, what="idp dev to serve")  # generous: init + three processes on a loaded machine
        output = (tmp_path / "dev.log").read_text()
        assert f"idp is running: http://127.0.0.1:{port}" in output
        assert "idp users create" in output

        def children() -> list[str]:
            found = subprocess.run(["pgrep", "-f", "-s", str(dev.pid), "idp (serve|worker|beat)"], capture_output=True, text=True)
            return found.stdout.split()

        wait_until(lambda: len(children()) >= 3, timeout=90, what="web, worker and beat to run")
        os.killpg(dev.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the foreground group
        assert dev.wait(timeout=90) == 0
        wait_until(lambda: not subprocess.run(["pgrep", "-s", str(dev.pid)], capture_output=True).stdout, timeout=60, what="every child to stop")
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)
        log.close()
