"""Helpers for tests that run real `idp` processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qs

import pytest


def share_url_builders() -> None:
    """Build each URL rule's compiled builder once per test process instead of once per app.

    Werkzeug compiles two Python functions per rule (from an AST) every time a rule is bound to a
    map; with about 95 rules that is most of `create_app`'s time (0.3 s idle, 1.5 s under load),
    and the suite builds an app per test. A builder depends only on the rule's text, its parsed
    parts and its defaults, so identical rules of later apps reuse the first app's functions
    (each bound to its own rule as before). Rules whose defaults fill a converted part are
    compiled as usual.
    """
    from werkzeug.routing.rules import Rule

    compile_builder = Rule._compile_builder
    if getattr(compile_builder, "shared", False):
        return
    builders: dict[tuple, Callable] = {}

    def shared_builder(self: Rule, append_unknown: bool = True) -> Callable:
        defaults = self.defaults or {}
        if any(is_dynamic and data in defaults for is_dynamic, data in self._trace):
            return compile_builder(self, append_unknown)
        key = (self.rule, tuple(self._trace), repr(sorted(defaults.items())), append_unknown)
        if key not in builders:
            builders[key] = compile_builder(self, append_unknown)
        return builders[key]

    shared_builder.shared = True  # type: ignore[attr-defined]
    Rule._compile_builder = shared_builder  # type: ignore[method-assign]
    Rule._parse_rule = _shared_parse(Rule._parse_rule)  # type: ignore[method-assign]


def _shared_parse(parse_rule: Callable) -> Callable:
    """Rule._parse_rule that parses each rule text once per test process (a third of create_app's time).

    Parsing yields the rule's parts and records its trace, converters and arguments on the rule;
    a later rule with the same text and the same converter classes gets the same results. The
    converter objects are shared too: they hold their map but never read it.
    """
    parsed: dict[tuple, tuple] = {}

    def shared_parse(self, rule: str):
        key = (rule, tuple(sorted(self.map.converters.items(), key=lambda item: item[0])))
        if key not in parsed:
            trace, converters, arguments = len(self._trace), dict(self._converters), set(self.arguments)
            parts = list(parse_rule(self, rule))
            added = {name: converter for name, converter in self._converters.items() if converters.get(name) is not converter}
            parsed[key] = (parts, self._trace[trace:], added, self.arguments - arguments)
            return iter(parts)
        parts, trace, added, arguments = parsed[key]
        self._trace.extend(trace)
        self._converters.update(added)
        self.arguments.update(arguments)
        return iter(parts)

    return shared_parse


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_idp(args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the real `idp` command and capture its output."""
    return subprocess.run([sys.executable, "-m", "idp", *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout)


def stop_process_group(popen: subprocess.Popen, signalled: bool = False) -> None:
    """SIGTERM a process started with start_new_session, and its group (unless `signalled` already); SIGKILL after 20 s.

    Returns only once no process of the group is left: a child that outlived its leader (the pool
    process of a worker the test killed) would go on writing into the data of later tests.
    """
    leader_was_gone = popen.poll() is not None
    if not leader_was_gone:
        if not signalled:
            os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
    # Orphans of a leader that died before the stop get no grace; those of one that stopped, 5 s.
    kill_at = time.monotonic() + (0 if leader_was_gone else 5)
    give_up_at = kill_at + 30
    while _group_members(popen.pid) and time.monotonic() < give_up_at:
        if time.monotonic() >= kill_at:
            try:
                os.killpg(popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
        time.sleep(0.05)


def _group_members(group: int) -> list[int]:
    """Pids of the live (not zombie) processes in process group `group`, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _parent, process_group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # the process ended while being read
        if int(process_group) == group and state != "Z":
            members.append(int(stat.parent.name))
    return members


def invoke_idp(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run the `idp` command in this process (Click's CliRunner): run_idp's contract without a process start.

    The environment is exactly `env` as far as IDP_* goes (others of this process are hidden), an
    uncaught exception is a traceback on stderr with exit status 1 as in a real process, and every
    app the command built has its database pool closed afterwards.
    """
    from click.testing import CliRunner

    from idp.cli import cli

    hidden = {name: None for name in os.environ if name.startswith("IDP_") and name not in env}
    with _closing_apps_built():
        result = CliRunner().invoke(cli, args, input=stdin, env={**hidden, **env}, prog_name="idp")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["idp", *args], result.exit_code, result.stdout, stderr)


@contextmanager
def _closing_apps_built() -> Iterator[None]:
    """Dispose the engine of every app built inside the block (a CLI command builds its own)."""
    import idp
    import idp.cli
    import idp.jobs.cli
    import idp.keyring.cli
    import idp.manage
    from idp.db import db

    real, built = idp.create_app, []

    def create_app(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    idp.create_app = idp.cli.create_app = idp.manage.create_app = idp.jobs.cli.create_app = idp.keyring.cli.create_app = create_app
    try:
        yield
    finally:
        idp.create_app = idp.cli.create_app = idp.manage.create_app = idp.jobs.cli.create_app = idp.keyring.cli.create_app = real
        for app in built:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


class Process:
    """A background `idp` process whose output goes to a log file, stopped with SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, module: str = "idp"):
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.popen = subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text()

    def terminate(self) -> None:
        """SIGTERM the group without waiting (stop several servers at once, then stop() each)."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self, signalled: bool = False) -> None:
        """SIGTERM the process group (unless `signalled` already) and wait; SIGKILL after 20 s."""
        stop_process_group(self.popen, signalled=signalled)
        self._log.close()

    @staticmethod
    def stop_all(processes: list["Process"]) -> None:
        """Stop several processes at once: one SIGTERM each, then wait for them all."""
        for process in processes:
            process.terminate()
        for process in processes:
            process.stop(signalled=True)

    def kill(self) -> None:
        """SIGKILL the whole process group at once (fault tests)."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def worker_pids(master: int) -> set[int]:
    """The pids of a gunicorn master's workers (its child processes) right now."""
    found = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def wait_until(predicate: Callable[[], bool], timeout: float = 30, interval: float = 0.1, what: str = "condition") -> None:
    """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def json_lines(output: str) -> list:
    """Parse each non-empty line of CLI output as JSON."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


class Receiver:
    """An RP's back-channel endpoint: records every logout token POSTed to it and answered.

    With `stall=n`, the first n requests get no answer until `release` is set (a receiver that
    hangs), and count only in `stalled`.
    """

    def __init__(self, status: int = 200, stall: int = 0):
        self.tokens: list[str] = []
        self.stalled: list[str] = []
        self.status = status
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                tokens = parse_qs(body).get("logout_token", [])
                if len(receiver.stalled) < stall:
                    receiver.stalled.extend(tokens)
                    receiver.release.wait(timeout=120)
                    return  # the caller gave up (or died) long ago: close without an answer
                receiver.tokens.extend(tokens)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/backchannel"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def commit_app_contexts(app) -> None:
    """A test's `with app.app_context():` block is its unit of work, as a CLI command is (idp/db.py).

    Services no longer commit; a test that changes rows through them in one context and reads them
    in another (a request, a thread, a process) gets them committed when the block ends without an
    error. A request has committed or rolled back at its own edge by then, so this adds nothing there.
    """
    from idp.db import db
    from idp.outages import is_database_unavailable

    @app.teardown_appcontext
    def _commit(error: BaseException | None) -> None:
        if error is not None or not db.session.registry.has() or not db.session().in_transaction():
            return
        session = db.session()
        # The session is removed next: what the block loaded stays readable, as it did before.
        session.expire_on_commit = False
        try:
            session.commit()
        except Exception as failure:
            if not is_database_unavailable(failure):
                raise


def committing(service: Callable) -> Callable:
    """`service` as its own unit of work, as one request runs it (idp/db.py): what it changed is
    committed when it returns and rolled back when it raises (what it kept `durable` stays)."""
    from functools import wraps

    from idp.db import db

    @wraps(service)
    def run(*args, **kwargs):
        try:
            result = service(*args, **kwargs)
        except BaseException:
            db.session.rollback()
            raise
        db.session.commit()
        return result

    return run
