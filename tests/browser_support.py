"""What every headless-Chromium test shares: one browser per test process, a fresh context per page,
and one `idp serve` per configuration, kept for the tests of every module that asks for it.

Import the fixtures into a directory's conftest.py (or a test module): `from tests.browser_support
import chromium, shared_server  # noqa: F401`.

Why the process, and why kept here rather than in a session fixture: a Chromium launch and a server
start each cost a second or more of CPU, and a pytest-xdist worker runs browser tests of several
modules. Playwright's sync API runs one instance per thread, on an asyncio loop that counts as
running in that thread: while it runs, `sync_playwright()` (and `asyncio.run()`) anywhere else in
the main thread fails, so every browser test of the process uses this one (tests/functional/test_nginx.py
does), and a test that needs asyncio runs its loop in a thread of its own (as aiosmtpd does).
A fixture imported into several modules or conftests is a separate fixture in each, and each would
start its own; `_KEPT` holds the one of this process, and pytest's config cleanup stops it when the
process's tests are done. Isolation between tests comes from fresh browser contexts (own cookie
jars and storage) and a clean database per test.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import require_service, wait_for_server
from tests.support import Process, free_port

# Debian's headless shell of Chromium (package chromium-headless-shell, built with `chromium` from one
# source and version): no browser windows, so about 45% less CPU per page test than `chromium --headless`.
CHROMIUM = "/usr/bin/chromium-headless-shell"
# A host name of the tests' own (RFC 6761 reserves .test), resolved to loopback by the browser:
# the nginx test serves TLS for it. No other test names it.
TEST_HOST = "idp.test"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--host-resolver-rules=MAP {TEST_HOST} 127.0.0.1"]

# This process's Playwright, Chromium and servers, made on first use (see the module's docstring).
_KEPT: dict[str, object] = {}


def _stop_kept() -> None:
    """Close the browser, stop Playwright and the kept servers (pytest's config cleanup)."""
    if "chromium" in _KEPT:
        _KEPT["chromium"].close()
    if "playwright" in _KEPT:
        _KEPT["playwright"].stop()
    if "servers" in _KEPT:
        _KEPT["servers"].stop()
    _KEPT.clear()


def _kept(config) -> dict[str, object]:
    """The process's shared things; the first call registers their cleanup with pytest."""
    if not _KEPT:
        config.add_cleanup(_stop_kept)
        _KEPT["cleanup"] = _stop_kept
    return _KEPT


@pytest.fixture
def chromium(pytestconfig):
    """Debian's Chromium under Playwright (never a downloaded browser), one per test process.

    Looked up for each test (a dictionary look-up), so a browser that crashed is launched again.
    """
    require_service("chromium", os.path.exists(CHROMIUM), "apt-get install chromium-headless-shell")
    kept = _kept(pytestconfig)
    browser = kept.get("chromium")
    if browser is None or not browser.is_connected():  # a crashed browser is not every later test's failure
        if "playwright" not in kept:
            # A web-first assertion waits up to 5 s by default: too little for a page on a machine loaded
            # four times over. Waiting longer only changes how long a failing test takes to fail.
            expect.set_options(timeout=15_000)
            kept["playwright"] = sync_playwright().start()
        browser = kept["chromium"] = kept["playwright"].chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    return browser


@dataclass
class PageOpener:
    """Opens pages in fresh contexts (own cookie jars) and collects script errors and unexpected console errors."""

    browser: object
    tolerated_console: re.Pattern
    timeout_ms: int = 15_000
    prepare: Callable | None = None  # called with each new context (routes, permissions)
    contexts: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def __call__(self, **context_options):
        """A page in a new context, 1280 x 900 unless `context_options` say otherwise."""
        context = self.browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context_options})
        self.contexts.append(context)
        if self.prepare:
            self.prepare(context)
        page = context.new_page()
        page.set_default_timeout(self.timeout_ms)
        page.on("pageerror", lambda error: self.problems.append(str(error)))
        page.on("console", lambda message: self.problems.append(message.text)
                if message.type == "error" and not self.tolerated_console.search(message.text) else None)
        return page

    def close(self) -> None:
        """Close every context, then fail on any problem a page reported."""
        for context in self.contexts:
            context.close()
        assert self.problems == [], self.problems


def open_pages(browser, tolerated_console: str, prepare: Callable | None = None) -> Iterator[PageOpener]:
    """The body of a `new_page` fixture: yield an opener, close its contexts and check its problems after the test."""
    opener = PageOpener(browser, re.compile(tolerated_console), prepare=prepare)
    yield opener
    opener.close()


# --- one `idp serve` per configuration -------------------------------------------------------------

# What differs between two tests of a backend without changing the server: the per-test folders of
# the test mapping (a shared server keeps the first test's; the database, the broker and the keys
# are the same for every test of a backend) and pytest's note of the running test.
PER_TEST_ENV = ("IDP_INSTANCE_DIR", "IDP_KEYS_DIR", "PYTEST_CURRENT_TEST")


@dataclass
class Served:
    """A running `idp serve`: its base URL (= its issuer) and its log."""

    base: str
    process: Process
    log_path: Path

    def log_since(self, offset: int) -> str:
        """What the server logged after `offset` characters (a test's own share of a shared log)."""
        return self.log_path.read_text()[offset:]

    def log_size(self) -> int:
        return len(self.log_path.read_text())


class ServerPool:
    """Servers kept for the test process, one per environment (so per database backend) and module (idp or a wrapper)."""

    def __init__(self) -> None:
        self.servers: dict[tuple, Served] = {}

    def get(self, env: dict[str, str], module: str, log_dir: Path) -> Served:
        key = (module, tuple(sorted((name, value) for name, value in env.items() if name not in PER_TEST_ENV)))
        served = self.servers.get(key)
        if served is None or served.process.popen.poll() is not None:
            served = self.servers[key] = start_idp_serve(env, module, log_dir)
        return served

    def stop(self) -> None:
        Process.stop_all([served.process for served in self.servers.values()])


def start_idp_serve(env: dict[str, str], module: str, log_dir: Path, host_name: str = "127.0.0.1") -> Served:
    """Start `idp serve` (2 workers) on a free port of 127.0.0.1 and wait until it answers /healthz.

    Its issuer (and base URL) names the host `host_name`: `localhost` where WebAuthn needs a domain.
    """
    port = free_port()
    base = f"http://{host_name}:{port}"
    log_path = log_dir / f"serve-{port}.log"
    process = Process(["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                      {**env, "IDP_ISSUER": base}, log_path, module=module)

    wait_for_server(process, f"http://127.0.0.1:{port}")
    return Served(base, process, log_path)


@pytest.fixture
def server_pool(pytestconfig) -> ServerPool:
    """The servers the browser tests of this process share; stopped once its last test is done."""
    return _kept(pytestconfig).setdefault("servers", ServerPool())


@pytest.fixture
def shared_server(app, idp_env, idp_module, tmp_path, server_pool) -> Served:
    """A real `idp serve` shared with the process's other tests on the same backend and settings.

    Each test still gets a clean database (the `app` fixture) with the same signing keys, and
    a fresh browser context: all the server keeps between tests is its processes.
    """
    return server_pool.get(idp_env, idp_module, tmp_path)
