"""Start node-oidc-provider (bench/node/server.js) on loopback: one process, or a `cluster` of several."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bench.harness import BenchError
from bench.server import free_port, serving

NODE_DIR = Path(__file__).resolve().parent / "node"
CLIENT_IDS = ("cc-rs256", "cc-es256", "rp", "rs")
# node answers within 1 s (one process) and 2 s (a cluster of two) here beside a suite starting up:
# 60 s without an answer is a start that hangs.
START_SECONDS = 60
RESTARTED = "node-oidc-provider: starting it once more, on another port"
_INSTALLING = threading.Lock()  # the node servers start side by side (all_running): one `npm ci` at a time


@dataclass
class NodeTarget:
    """A running node-oidc-provider: its URL, process id (the root of its tree) and client secrets."""

    base_url: str
    pid: int
    workers: int
    secrets: dict[str, str]

    def mint(self, kind: str, count: int, **extra) -> list[str]:
        """Grants and `kind` tokens (access, refresh, code) stored by the one process; their values."""
        body = json.dumps({"kind": kind, "count": count, **extra}).encode()
        request = urllib.request.Request(self.base_url + "/__bench/mint", data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                return json.load(answer)["tokens"]
        except OSError as error:
            raise BenchError(f"node could not mint {count} {kind} tokens: {error}") from None


def node_version() -> str | None:
    """`node --version`, or None when node is not installed."""
    node = shutil.which("node")
    if node is None:
        return None
    return subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()


def ensure_installed() -> None:
    """`npm ci` from the committed lock file when node_modules is missing (or older than the lock)."""
    with _INSTALLING:
        _ensure_installed()


def _ensure_installed() -> None:
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None or node_version() is None:
        raise BenchError("node and npm are needed for --compare (Node 20.19+ and npm)")
    done = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise BenchError(f"npm ci failed in {NODE_DIR}: {done.stderr.strip()[-2000:]}")


@contextmanager
def running_node(workers: int = 1) -> Iterator[NodeTarget]:
    """node-oidc-provider with its in-memory adapter on a free loopback port; stopped after."""
    ensure_installed()
    workdir = Path(tempfile.mkdtemp(prefix="idp-bench-node-"))
    client_secrets = {client_id: secrets.token_urlsafe(32) for client_id in CLIENT_IDS}
    secrets_file = workdir / "secrets.json"
    secrets_file.write_text(json.dumps({**client_secrets, "cookie": secrets.token_urlsafe(32)}))
    secrets_file.chmod(0o600)
    try:
        with ExitStack() as stack:
            process, base_url = _start(stack, workers, secrets_file, workdir)
            yield NodeTarget(base_url, process.pid, workers, client_secrets)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _start(stack: ExitStack, workers: int, secrets_file: Path, workdir: Path) -> tuple[subprocess.Popen, str]:
    """Start node on a free port. One that exits (that port was taken meanwhile) or does not answer
    within START_SECONDS (stopped: CI twice saw a node that never listened) is reported on stderr and
    started once more, on another port."""
    try:
        return _serve(stack, workers, secrets_file, workdir / "node.log")
    except BenchError as error:
        print(f"{error}\n{RESTARTED}", file=sys.stderr, flush=True)
    return _serve(stack, workers, secrets_file, workdir / "node-again.log")


def _serve(stack: ExitStack, workers: int, secrets_file: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    args = [shutil.which("node") or "node", str(NODE_DIR / "server.js"), "--port", str(port), "--workers", str(workers),
            "--secrets", str(secrets_file)]
    process = stack.enter_context(serving(
        args, name=f"node-oidc-provider ({workers} process{'es' if workers > 1 else ''})",
        ready_url=base_url + "/.well-known/openid-configuration", log=log, env={**os.environ, "NODE_ENV": "production"},
        cwd=NODE_DIR, timeout=START_SECONDS))
    return process, base_url
