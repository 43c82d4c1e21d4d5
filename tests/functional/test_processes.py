"""Real processes: `idp serve` under gunicorn, a Celery worker, and `idp dev` running all three."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from idp.db import db
from idp.models import JobRun
from tests.support import free_port, invoke_idp, run_idp, wait_until


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
    """Pid, state and command line of every live process still in session `sid` (`idp dev` and all it started).

    Zombies are left out: they run nothing, and one whose parent has ended waits only for init to
    reap it (a loaded run once saw the `uname` that Celery's start-up runs, its parent stopped first).
    A zombie whose parent still runs is found through that parent.
    """
    found = subprocess.run(["ps", "-s", str(sid), "-o", "pid=,stat=,args="], capture_output=True, text=True)
    return [line.strip() for line in found.stdout.splitlines() if not line.split()[1].startswith("Z")]


@pytest.fixture(scope="module")
def dev_instance(tmp_path_factory) -> tuple[int, dict[str, str], Path]:
    """An already-initialised instance for the `idp dev` runs of this module (per xdist worker): port, env, folder.

    The runs of one xdist worker take turns on it, as one developer's Ctrl-C and restart would, so
    each run also proves the previous one left the port free.
    """
    root = tmp_path_factory.mktemp("dev")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_ISSUER=f"http://127.0.0.1:{port}", IDP_INSTANCE_DIR=str(root / "instance"), IDP_KEYS_DIR=str(root / "keys"), PYTHONUNBUFFERED="1")
    initialised = invoke_idp(["init"], env)  # in-process: the runs below start `idp dev` for real
    assert initialised.returncode == 0, initialised.stderr
    return port, env, root


def children_seen(dev: subprocess.Popen) -> dict[str, int]:
    """How many processes of each child (serve, worker, beat) run in `idp dev`'s session right now."""
    seen = {"serve": 0, "worker": 0, "beat": 0}
    for line in session_processes(dev.pid):
        for name in seen.keys() & set(line.split()):
            seen[name] += 1
    return seen


def ready(dev: subprocess.Popen, log_path: Path) -> bool:
    """`idp dev` said it runs (only once the server answers) and web, worker and beat all run."""
    return "idp is running" in log_path.read_text() and all(children_seen(dev).values())


def worker_pool_up(dev: subprocess.Popen, log_path: Path) -> bool:
    """Ready, and the worker's pool processes (--concurrency, 2) run beside its main process."""
    return ready(dev, log_path) and children_seen(dev)["worker"] >= 3


# The moment Ctrl-C lands, each named by what was just seen in `idp dev`'s session or output;
# conditions, not timings, so each case lands in its own phase however loaded the machine is (the
# ten cases this replaced sent it 0-4 s after "ready", five of them at 0 s, to sample the worker's
# and beat's start-up by chance). One `idp dev` each, so xdist spreads them.
MOMENTS = {
    # The three children exist and are still importing: none has its own handlers yet.
    "children-starting": lambda dev, log_path: all(children_seen(dev).values()),
    # gunicorn listens and boots its workers (a stop there was once lost for 30 s).
    "web-listening": lambda dev, log_path: "Listening at:" in log_path.read_text(),
    # The worker printed its banner: it installs its handlers and starts its pool.
    "worker-starting": lambda dev, log_path: "-------------- celery@" in log_path.read_text(),
    # Beat printed its banner: it installs its handlers and sets up its schedule (once a traceback).
    "beat-starting": lambda dev, log_path: "celery beat v" in log_path.read_text(),
    # Web answers and said so; the worker's pool runs and its consumer connects.
    "all-ready": worker_pool_up,
}
# (moment, then this many seconds): the last is the settled state, beat's at-start ticks sent and taken.
CTRL_C_AT = [("children-starting", 0), ("web-listening", 0), ("worker-starting", 0), ("beat-starting", 0), ("all-ready", 0), ("all-ready", 2)]


@pytest.mark.parametrize(("moment", "after"), [
    pytest.param(moment, after, id=f"run{run}-{moment}" + (f"-then-{after}s" if after else "")) for run, (moment, after) in enumerate(CTRL_C_AT)
])
def test_dev_runs_web_worker_and_beat_and_stops_cleanly_on_every_ctrl_c(dev_instance, moment, after):
    port, env, root = dev_instance
    log_path = root / f"dev-{uuid.uuid4().hex}.log"
    with open(log_path, "w") as log:
        # A session of its own, like a terminal's foreground job: killpg below is the terminal's Ctrl-C.
        dev = subprocess.Popen([sys.executable, "-m", "idp", "dev"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    try:
        wait_until(lambda: MOMENTS[moment](dev, log_path) or dev.poll() is not None, timeout=120, what=f"idp dev to reach {moment}")
        assert dev.poll() is None, log_path.read_text()
        if moment == "all-ready":
            # Said only once the server answers, and never before.
            assert requests.get(f"http://127.0.0.1:{port}/.well-known/openid-configuration", timeout=5).ok
            output = log_path.read_text()
            assert f"idp is running: http://127.0.0.1:{port}" in output and "idp users create" in output
        time.sleep(after)  # the moment under test, not a wait for anything
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


def test_dev_on_a_taken_port_is_one_clear_line_and_starts_nothing(dev_instance):
    port, env, _ = dev_instance
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run_idp(["dev"], env, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip() == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; stop what uses it or pass --port"
    assert result.stdout == ""
