"""What every headless-Chromium test shares: one browser per test module, a fresh context per page,
and one `idp serve` shared by the tests of a module.

Import the fixtures into a directory's conftest.py (or a test module): `from tests.browser_support
import chromium, shared_server  # noqa: F401`.

Why a module and not the session: Playwright's sync API runs one instance per thread, and while one
is running `sync_playwright()` anywhere else in the process fails ("using Playwright Sync API inside
the asyncio loop"). tests/functional/test_nginx.py starts its own, so a browser kept for the whole
session would break it whenever it ran after a browser test on the same pytest-xdist worker. pytest
runs a module's tests one after another and tears the module's fixtures down before the next
module's first test, so a module-scoped browser never overlaps another module's Playwright.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import require_service, wait_for_server
from tests.support import Process, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium under Playwright (never a downloaded browser), one per test module."""
    require_service("chromium", os.path.exists(CHROMIUM), "apt-get install chromium")
    from playwright.sync_api import expect, sync_playwright

    # A web-first assertion waits up to 5 s by default: too little for a page on a machine loaded
    # four times over. Waiting longer only changes how long a failing test takes to fail.
    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


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


# --- one `idp serve` for a module's tests ----------------------------------------------------------

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
    """Servers kept for a module, one per environment (so per database backend); stopped with the module."""

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


@pytest.fixture(scope="module")
def server_pool() -> Iterator[ServerPool]:
    """The servers the tests of this module share; stopped once its last test is done."""
    pool = ServerPool()
    yield pool
    pool.stop()


@pytest.fixture
def shared_server(app, idp_env, idp_module, tmp_path, server_pool) -> Served:
    """A real `idp serve` shared with the module's other tests on the same backend.

    Each test still gets a clean database (the `app` fixture) with the same signing keys, and
    a fresh browser context: all the server keeps between tests is its processes.
    """
    return server_pool.get(idp_env, idp_module, tmp_path)
