"""Slow clients against the web server: how long /healthz takes while N connections hold half a request head.

`python -m bench.slow_clients [--slow 12 20 50] [--probes 5]` starts gunicorn (2 workers x 4
threads, SQLite, loopback) once per configuration: gunicorn's stock gthread worker, the same with
32 threads, and `idp serve`'s worker (idp/serving.py). For each number of slow connections it
prints the worst and median time of fresh /healthz requests. Loopback only, bounded in time.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bench.server import free_port, serving

CONFIGURATIONS = {
    "gthread 2x4": ["--worker-class", "gthread", "--threads", "4"],
    "gthread 2x32": ["--worker-class", "gthread", "--threads", "32"],
    "idp serve 2x4": ["--worker-class", "idp.serving.HeadBufferingWorker", "--threads", "4"],
}
PROBE_TIMEOUT = 15.0
HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@contextmanager
def gunicorn(options: list[str]) -> Iterator[int]:
    """gunicorn serving the IdP on a free loopback port with `options`; stopped after."""
    port, workdir = free_port(), Path(tempfile.mkdtemp(prefix="idp-slow-"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("IDP_")}
    env.update(IDP_ISSUER=f"http://127.0.0.1:{port}", IDP_INSTANCE_DIR=str(workdir / "instance"), IDP_KEYS_DIR=str(workdir / "keys"), IDP_LOG_LEVEL="WARNING")
    subprocess.run([sys.executable, "-m", "idp", "init"], env=env, check=True, capture_output=True)
    args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2", *options, "idp:create_app()"]
    try:
        with serving(args, name="gunicorn", ready_url=f"http://127.0.0.1:{port}/healthz", log=workdir / "gunicorn.log", env=env):
            yield port
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def probe(port: int) -> float:
    """Seconds a fresh /healthz request takes (PROBE_TIMEOUT if it is not answered by then)."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
    try:
        connection.request("GET", "/healthz")
        connection.getresponse().read()
    except OSError:
        return PROBE_TIMEOUT
    finally:
        connection.close()
    return time.monotonic() - started


def measure(port: int, slow: int, probes: int) -> list[float]:
    """Probe times while `slow` connections each hold half a request head."""
    held = []
    try:
        for _ in range(slow):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(HALF_HEAD)
            held.append(sock)
        time.sleep(0.5)  # let the server take them up
        return [probe(port) for _ in range(probes)]
    finally:
        for sock in held:
            sock.close()


def main(argv: list[str] | None = None) -> None:
    """Print worst and median /healthz time per configuration and number of slow connections."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slow", type=int, nargs="+", default=[12, 20, 50])
    parser.add_argument("--probes", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{'configuration':<16} {'slow':>5} {'worst s':>8} {'median s':>9}")
    for name, options in CONFIGURATIONS.items():
        with gunicorn(options) as port:
            for slow in args.slow:
                times = measure(port, slow, args.probes)
                print(f"{name:<16} {slow:>5} {max(times):>8.3f} {statistics.median(times):>9.3f}", flush=True)
                time.sleep(1)


if __name__ == "__main__":
    main()
