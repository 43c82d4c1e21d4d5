"""Generated fuzz: every route and method of the URL map, with hostile parameters, bodies and headers, never a 5xx.

Requests come from `bench.fuzz.generate` (the same generator as the 100,000-request run against
`idp serve`) and go through Flask's test client, as an anonymous browser, a signed-in user and a
signed-in admin with a fresh password (so the admin pages' forms and actions are reached, with a
valid CSRF token some of the time). A sweep first sends every (route, method) pair, the
identities taking turns, then Hypothesis draws more. Derandomized with a fixed number of
examples, so a CI run is reproducible and bounded.
"""

from __future__ import annotations

import itertools
import logging
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bench.fuzz import FuzzRequest, Known, generate, routes
from idp.db import db
from idp.models import User, UserSession
from idp.security import digest

EXAMPLES = 150
CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


@pytest.fixture
def config(config):
    """Long enough a re-authentication that the admin's sensitive pages stay reachable for the whole run."""
    return {**config, "ADMIN_REAUTH_MAX_AGE": 3600}


class Identity:
    """A signed-in browser of one kind ("sso" or "admin"), made again whenever a fuzzed request ended it."""

    def __init__(self, app, kind: str):
        self.app, self.kind = app, kind
        self.cookie = self.csrf = ""
        self.user_id: int | None = None
        self.made = 0

    @property
    def cookie_name(self) -> str:
        return "idp_admin" if self.kind == "admin" else "idp_session"

    def alive(self) -> bool:
        with self.app.app_context():
            row = db.session.scalar(db.select(UserSession).where(UserSession.id_digest == digest(self.cookie))) if self.cookie else None
            user = db.session.get(User, row.user_id) if row is not None else None
            return bool(user and row.token_version == user.token_version and not user.is_disabled and (self.kind == "sso" or user.is_admin))

    def ensure(self) -> None:
        """A live session (and its CSRF token) for this identity, through the real services and pages."""
        if self.alive():
            return
        from idp.sessions.service import new_row
        from idp.users.service import create_user

        self.made += 1
        with self.app.app_context():
            user = create_user(f"fuzz-{self.kind}-{self.made}@example.com", "correct horse battery", is_admin=self.kind == "admin")
            self.cookie, row = new_row(self.app, self.kind, user)
            db.session.commit()
            self.user_id = user.id
        page = "/admin/users/new" if self.kind == "admin" else "/account"
        html = self.app.test_client(use_cookies=False).get(page, headers={"Cookie": f"{self.cookie_name}={self.cookie}"}).get_data(as_text=True)
        match = CSRF_INPUT.search(html)
        assert match, f"no CSRF token on {page}"
        self.csrf = match.group(1) or match.group(2)

    def dress(self, request: FuzzRequest, rng: random.Random) -> None:
        """Add this browser's cookie, and (mostly) its CSRF token to a form body."""
        cookies = [f"{self.cookie_name}={self.cookie}"] + ([request.headers["Cookie"]] if "Cookie" in request.headers else [])
        request.headers["Cookie"] = "; ".join(cookies)
        if rng.random() < 0.7 and request.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            request.body = (request.body or b"") + f"&csrf_token={self.csrf}".encode()


def answer(app, request: FuzzRequest):
    """Send one generated request through the test client (a chunked body goes as a plain one here)."""
    path, _, query = request.target.partition("?")
    body = request.body if request.chunked is None else request.chunked
    return app.test_client(use_cookies=False).open(path, method=request.method, query_string=query,
                                                   headers=request.headers, data=body)


def test_no_request_gets_a_5xx_or_logs_an_error(app, make_client, caplog):
    client, secret = make_client(name="Fuzz RP", redirect_uris=["http://127.0.0.1:9/callback"])
    identities = {"anonymous": None, "sso": Identity(app, "sso"), "admin": Identity(app, "admin")}
    known = Known(client_id=client.client_id, client_secret=secret, redirect_uri="http://127.0.0.1:9/callback",
                  strings=["rotate_keys", "purge"])
    table = routes(app)
    seen: dict[str, int] = {}
    caplog.set_level(logging.ERROR)

    def check(request: FuzzRequest, who: str, rng: random.Random) -> None:
        identity = identities[who]
        if identity is not None:
            identity.ensure()
            known.integers = [str(identity.user_id)]
            identity.dress(request, rng)
        caplog.clear()
        with answer(app, request) as response:
            status, text = response.status_code, response.get_data(as_text=True)
        seen[who] = seen.get(who, 0) + 1
        assert status < 500, (who, request, text[:500])
        assert not [record.getMessage() for record in caplog.records], (who, request)

    # Every route with every method it allows, once, the identities taking turns.
    sweep, turns = random.Random(9), itertools.cycle(sorted(identities))
    for rule, methods in table:
        for method in methods:
            check(generate(sweep, table, known, rule=rule, method=method), next(turns), sweep)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(rng=st.randoms(use_true_random=False), who=st.sampled_from(sorted(identities)))
    def fuzz(rng: random.Random, who: str) -> None:
        check(generate(rng, table, known), who, rng)

    fuzz()
    assert sum(seen.values()) >= EXAMPLES + len(table) and set(seen) == set(identities)
