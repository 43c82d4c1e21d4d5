"""A private PostgreSQL cluster (Debian's binaries) on a free port, to stop, kill and restart at will."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import free_port


def postgres_binaries() -> Path:
    """Debian's newest installed PostgreSQL server binaries (/usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql (Debian's postgresql package)")
    return found[-1].parent


PG_BIN = postgres_binaries()


class PostgresCluster:
    """initdb in a temporary folder; as root, every binary runs as the `postgres` user, who owns it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="idp-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [str(PG_BIN / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def start(self, timeout: float = 60) -> None:
        """Start and wait until it accepts connections; after a crash, retry while the old backends exit."""
        # fsync=off only skips flushing to disk: a killed postmaster still recovers from its WAL.
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} -c fsync=off"
        deadline = time.monotonic() + timeout
        while True:
            done = self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, timeout=90)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {done.stdout}{done.stderr}\n{self.log()}")
            time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop: `fast` ends every session at once; `immediate` skips the shutdown checkpoint."""
        self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data))

    def kill_postmaster(self) -> None:
        """SIGKILL the postmaster alone, as the OOM killer would; its backends notice and exit."""
        os.kill(int((self.data / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text() if path.exists() else ""

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
