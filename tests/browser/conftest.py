"""Fixtures of the page tests: one headless Chromium per module, and servers that can show a 500 page."""

from __future__ import annotations

import os

import pytest

from tests.conftest import require_service
from tests.oidc.conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD, REDIRECT_URI, register, rp, user  # noqa: F401  (fixtures too)
from tests.admin_ui.conftest import admin  # noqa: F401  (a fixture)

__all__ = ["PASSWORD", "REDIRECT_URI"]


@pytest.fixture
def idp_module() -> str:
    """Servers run as `idp` plus one failing test-only route (tests/browser/crashing_idp.py)."""
    return "tests.browser.crashing_idp"


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium under Playwright (never a downloaded browser)."""
    require_service("chromium", os.path.exists(CHROMIUM), "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium):
    """A page in a fresh context (own cookie jar) that fails the test on any script error or CSP violation.

    The relying party's redirect URI answers with a small page of its own, so a finished sign-in lands somewhere.
    """
    contexts, problems = [], []

    def open_page():
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        context.route(REDIRECT_URI.split("/callback")[0] + "/**", lambda route: route.fulfill(
            status=200, content_type="text/html", body="<!doctype html><html lang='en'><title>RP</title><main><h1>Back at the app</h1></main></html>"))
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: problems.append(str(error)))
        # Error pages answer 4xx/5xx on purpose (Chromium logs those as console errors); anything else is a problem.
        page.on("console", lambda message: problems.append(message.text)
                if message.type == "error" and "the server responded with a status of" not in message.text else None)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert problems == [], problems
