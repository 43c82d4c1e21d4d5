"""Ctrl-C on `idp serve` in a terminal: SIGINT to the whole foreground process group."""

import os
import signal
import time

import requests

from tests.conftest import SQLITE_ONLY, launch_server, wait_for_server
from tests.support import wait_until, worker_pids

# Signals reach processes, not databases.
pytestmark = SQLITE_ONLY


def test_ctrl_c_stops_serve_at_once_and_a_worker_leaves_sigint_to_its_master(idp_env, idp_module, tmp_path):
    """A worker ignores SIGINT (the master's SIGQUIT stops it); the group's Ctrl-C stops everything, cleanly, in seconds."""
    process, base = launch_server(idp_env, tmp_path, idp_module)
    try:
        wait_for_server(process, base)
        wait_until(lambda: len(worker_pids(process.popen.pid)) == 2, what="both workers to be forked")
        workers = worker_pids(process.popen.pid)

        # Its own copy of a Ctrl-C: acting on it as well as on the master's SIGQUIT is what could
        # deadlock a gthread worker's exit until the master's 30 s graceful timeout.
        os.kill(min(workers), signal.SIGINT)
        time.sleep(0.5)  # long enough for a worker acting on SIGINT to have exited (it takes ~0.1 s)
        assert worker_pids(process.popen.pid) == workers
        assert requests.get(base + "/healthz", timeout=10).status_code == 200

        started = time.monotonic()
        os.killpg(process.popen.pid, signal.SIGINT)
        # Generous for a loaded machine, yet well below the 30 s the deadlock cost.
        assert process.popen.wait(timeout=20) == 0
        assert time.monotonic() - started < 15, process.log()
        assert "Traceback" not in process.log()
    finally:
        process.stop()
