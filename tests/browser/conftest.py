"""Fixtures of the page tests: a shared headless Chromium and `idp serve` (tests/browser_support.py),
and servers that can show a 500 page."""

from __future__ import annotations

import pytest

from tests.browser_support import chromium, open_pages, server_pool, shared_server  # noqa: F401  (fixtures)
from tests.oidc.conftest import PASSWORD, REDIRECT_URI, register, rp, user  # noqa: F401  (fixtures too)
from tests.admin_ui.conftest import admin  # noqa: F401  (a fixture)

__all__ = ["PASSWORD", "REDIRECT_URI"]
RP_PAGE = "<!doctype html><html lang='en'><title>RP</title><main><h1>Back at the app</h1></main></html>"


@pytest.fixture
def idp_module() -> str:
    """Servers run as `idp` plus one failing test-only route (tests/browser/crashing_idp.py)."""
    return "tests.browser.crashing_idp"


def _answer_as_the_relying_party(context) -> None:
    context.route(REDIRECT_URI.split("/callback")[0] + "/**", lambda route: route.fulfill(status=200, content_type="text/html", body=RP_PAGE))


@pytest.fixture
def new_page(chromium):
    """A page in a fresh context (own cookie jar) that fails the test on any script error or CSP violation.

    The relying party's redirect URI answers with a small page of its own, so a finished sign-in lands somewhere.
    Error pages answer 4xx/5xx on purpose (Chromium logs those as console errors); anything else is a problem.
    """
    yield from open_pages(chromium, "the server responded with a status of", prepare=_answer_as_the_relying_party)
