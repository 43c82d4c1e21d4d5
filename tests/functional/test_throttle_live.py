"""The sign-in throttle against a real `idp serve`: parallel guesses, and guesses from many addresses.

Client sockets bind to 127.0.0.2, 127.0.0.3, ... so the server sees different client addresses
on loopback.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import func, select

from idp.db import db
from idp.models import AuditEvent
from tests.oidc.flow import csrf_token

PASSWORD = "correct horse battery"
GUESSES = 30
LIMIT, NEW_IPS = 3, 5  # small limits: every evaluation is an argon2 hash, the slow part of the test


@pytest.fixture
def config(config):
    """Also the server's settings (idp_env); a back-off far longer than the test, so a burst cannot reopen it."""
    return {**config, "LOGIN_THROTTLE_PER_ACCOUNT": LIMIT, "LOGIN_THROTTLE_PER_ACCOUNT_NEW_IPS": NEW_IPS,
            "LOGIN_THROTTLE_BACKOFF_BASE": 3600, "LOGIN_THROTTLE_BACKOFF_CAP": 3600}


class FromAddress(HTTPAdapter):
    """Connections from one local address (any of 127.0.0.0/8 on loopback)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def browser(address: str) -> requests.Session:
    """A cookie-keeping HTTP client whose requests come from `address`."""
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    return session


def sign_in(base: str, address: str, email: str, password: str, *, ready: threading.Barrier | None = None) -> int:
    """GET the form, then POST the credentials (after every thread is ready, when racing); the status."""
    with browser(address) as session:
        token = csrf_token(session.get(base + "/login", timeout=30).text)
        if ready is not None:
            ready.wait(timeout=120)
        return session.post(base + "/login", data={"username": email, "password": password, "csrf_token": token},
                            allow_redirects=False, timeout=120).status_code


def count(app, action: str) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action))


def test_parallel_guesses_get_the_limit_and_strangers_never_lock_the_owner_out(app, start_server, make_user):
    user = make_user(email="alice@example.com", password=PASSWORD)
    base = start_server()
    assert sign_in(base, "127.0.0.2", user.email, PASSWORD) == 200  # the owner's usual network

    # 30 wrong passwords at once from one stranger: only LIMIT are evaluated (argon2), the rest refused.
    ready = threading.Barrier(GUESSES)
    with ThreadPoolExecutor(GUESSES) as pool:
        statuses = list(pool.map(lambda _: sign_in(base, "127.0.0.3", user.email, "wrong", ready=ready), range(GUESSES)))
    assert sorted(statuses) == [401] * LIMIT + [429] * (GUESSES - LIMIT)
    assert count(app, "user.sign_in_failed") == LIMIT
    assert count(app, "auth.throttled") == GUESSES - LIMIT
    assert sign_in(base, "127.0.0.3", user.email, PASSWORD) == 429  # backed off, even with the password

    # More strangers, one guess each, until the account is backed off for every new address.
    for n in range(NEW_IPS - LIMIT):
        assert sign_in(base, f"127.0.0.{10 + n}", user.email, "wrong") == 401
    assert sign_in(base, "127.0.0.99", user.email, PASSWORD) == 429
    assert count(app, "user.sign_in_failed") == NEW_IPS
    # The owner, from the address they signed in from before, is not locked out.
    assert sign_in(base, "127.0.0.2", user.email, PASSWORD) == 200
