"""Fixtures of the second-factor tests: the sign-in flow helpers of tests/oidc, and page readers."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest

from idp.clock import utcnow
from tests.oidc.conftest import PASSWORD, basic, claims_of, oidc, register, rp, user  # noqa: F401  (fixtures too)
from tests.oidc.flow import csrf_token

__all__ = ["PASSWORD", "basic", "claims_of", "csrf_token"]


def shown_key(html: str) -> str:
    """The TOTP key the setup page shows as text (what a person types into their app)."""
    found = re.search(r'<code id="totp-key">([A-Z2-7]+)</code>', html)
    assert found, "no key on the setup page"
    return found.group(1)


def code_at(key: str, steps_ahead: int = 0) -> str:
    """The code an authenticator app holding `key` shows now (or that many 30-s steps later)."""
    return pyotp.TOTP(key).at(utcnow() + timedelta(seconds=30 * steps_ahead))


def recovery_codes(html: str) -> list[str]:
    """The recovery codes a page shows."""
    return re.findall(r"<li><code>([a-z0-9-]+)</code></li>", html)


@pytest.fixture
def post_form(client):
    """POST to `path` with the CSRF token of the page at `page` (default: `path`)."""

    def post(path: str, page: str | None = None, **fields):
        token = csrf_token(client.get(page or path).get_data(as_text=True))
        return client.post(path, data={"csrf_token": token, **fields})

    return post
