"""Real processes: `idp serve` under gunicorn, a Celery worker, and `idp dev` running all three."""

import os
import signal
import socket
import subprocess
import sys

import requests
from sqlalchemy import select

from idp.db import db
from idp.models import JobRun
from tests.support import free_port, run_idp, wait_until


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


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port (what the next `idp dev` needs)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def session_processes(sid: int) -> list[str]:
    """Command lines of every process still in session `sid` (`idp dev` and all it started)."""
    found = subprocess.run(["pgrep", "-a", "-s", str(sid)], capture_output=True, text=True)
    return found.stdout.splitlines()


def test_dev_runs_web_worker_and_beat_and_stops_cleanly_on_every_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_ISSUER=f"http://127.0.0.1:{port}", IDP_INSTANCE_DIR=str(tmp_path / "instance"), IDP_KEYS_DIR=str(tmp_path / "keys"), PYTHONUNBUFFERED="1")
    assert run_idp(["init"], env).returncode == 0  # every run below starts an already-initialised instance
    for run in range(10):
        log_path = tmp_path / f"dev-{run}.log"
        with open(log_path, "w") as log:
            # A session of its own, like a terminal's foreground job: killpg below is the terminal's Ctrl-C.
            dev = subprocess.Popen([sys.executable, "-m", "idp", "dev"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
        try:
            wait_until(lambda: "idp is running" in log_path.read_text() or dev.poll() is not None, timeout=90, what="idp dev to say it runs")
            # Said only once the server answers, and never before.
            assert requests.get(f"http://127.0.0.1:{port}/.well-known/openid-configuration", timeout=5).ok
            output = log_path.read_text()
            assert f"idp is running: http://127.0.0.1:{port}" in output and "idp users create" in output
            wait_until(lambda: {"serve", "worker", "beat"} <= {word for line in session_processes(dev.pid) for word in line.split()},
                       timeout=30, what="web, worker and beat to run")
            os.killpg(dev.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the foreground group
            assert dev.wait(timeout=90) == 0, log_path.read_text()
            # The command returned: nothing it started is left, and the port is free for the next run.
            assert session_processes(dev.pid) == [], log_path.read_text()
            assert port_is_free(port)
            output = log_path.read_text()
            assert "Traceback" not in output, output[output.find("Traceback") - 300:][:3000]
        finally:
            if dev.poll() is None or session_processes(dev.pid):
                os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()

    # A taken port is one clear line and a non-zero exit, and nothing is started.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run_idp(["dev"], env, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip() == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; stop what uses it or pass --port"
    assert result.stdout == ""
