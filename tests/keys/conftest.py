"""Fixtures for key rotation and background jobs: fixed timings, a driven clock, test JWTs."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
from jwcrypto import jwk, jwt
from jwcrypto.common import JWException
from sqlalchemy import select

from idp.db import db
from idp.keyring import service as keyring
from idp.keyring.models import KeyState, SigningKey
from tests.support import wait_until

# Timings the tests reason about; the in-process app and every `idp` subprocess share them.
TIMINGS = {
    "ACCESS_TOKEN_TTL": 300,
    "ID_TOKEN_TTL": 3600,
    "ID_TOKEN_HINT_TTL": 7200,  # the longest lifetime: it sets the retirement grace
    "CLOCK_SKEW": 60,
    "JWKS_MAX_AGE": 300,
    "KEY_ROTATION_PERIOD": 86400,
    "KEY_ROTATION_LEAD_TIME": 3600,
}
GRACE = timedelta(seconds=7200 + 60)  # the computed KEY_RETIREMENT_GRACE
CACHE = timedelta(seconds=5)  # KEYRING_CACHE_SECONDS: added to the grace
PERIOD = timedelta(seconds=86400)
LEAD = timedelta(seconds=3600)


@pytest.fixture
def config(config):
    """The shared test configuration plus fixed rotation timings and the (test-only) job clock override."""
    return {**config, **TIMINGS, "JOB_CLOCK_OVERRIDE": True}


@pytest.fixture
def idp_env(idp_env):
    """`idp` subprocesses (serve, worker, CLI) with the same timings."""
    return {**idp_env, **{f"IDP_{name}": str(value) for name, value in TIMINGS.items()}}


@pytest.fixture
def idp_module() -> str:
    """Servers and workers started here honour the job clock override too (see job_clock.py)."""
    return "tests.keys.job_clock"


@pytest.fixture
def t0(app) -> datetime:
    """The moment the test's keyring was complete (every key created, the active ones activated)."""
    with app.app_context():
        return max(db.session.scalars(select(SigningKey.created_at)))


def keys_by_state(alg: str | None = None) -> dict[str, list[str]]:
    """kids per state (in the current app context), optionally for one algorithm."""
    query = select(SigningKey).order_by(SigningKey.id)
    if alg:
        query = query.where(SigningKey.alg == alg)
    found: dict[str, list[str]] = {state.value: [] for state in KeyState}
    for key in db.session.scalars(query):
        found[key.state.value].append(key.kid)
    return found


def published_kids() -> set[str]:
    """kids in the JWKS as this process would serve it right now (cache dropped first)."""
    keyring.invalidate_cache()
    return {key["kid"] for key in json.loads(keyring.jwks().body)["keys"]}


def sign_token(alg: str, issued_at: datetime, lifetime: int) -> dict:
    """A JWT signed like the IdP signs (its active key for `alg`); returns its kid, exp and compact form."""
    kid, key = keyring.signing_key(alg)
    exp = issued_at + timedelta(seconds=lifetime)
    token = jwt.JWT(
        header={"alg": alg, "kid": kid, "typ": "JWT"},
        claims={"iss": "http://localhost", "sub": "test", "jti": uuid.uuid4().hex, "iat": int(issued_at.timestamp()), "exp": int(exp.timestamp())},
    )
    token.make_signed_token(key)
    return {"kid": kid, "alg": alg, "exp": exp, "compact": token.serialize()}


def verifies_with(token: dict, jwks_document: bytes | str) -> bool:
    """The token's signature checks out against a JWKS document (expiry is not the question here)."""
    keyset = jwk.JWKSet.from_json(jwks_document)
    try:
        jwt.JWT(jwt=token["compact"], key=keyset, check_claims=False, expected_type="JWS")
    except JWException:  # no key with that kid, or a bad signature
        return False
    return True


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def served_jwks(base: str) -> str:
    """The JWKS as a running `idp serve` answers it."""
    return requests.get(base + "/.well-known/jwks.json", timeout=5).text


def every_worker_serves(base: str, predicate, tries: int = 6) -> bool:
    """`predicate(jwks)` holds for several answers in a row (a server has several workers)."""
    return all(predicate(served_jwks(base)) for _ in range(tries))


def served_after_cache_window(bases: list[str], predicate, changed_at: float) -> None:
    """Once KEYRING_CACHE_SECONDS have passed since a change (monotonic `changed_at`), every answer
    of every server satisfies `predicate`; fails if any still does not a few seconds later."""
    from idp.config import KEYRING_CACHE_SECONDS

    def settled() -> bool:
        return time.monotonic() >= changed_at + KEYRING_CACHE_SECONDS and all(every_worker_serves(base, predicate) for base in bases)

    wait_until(settled, timeout=KEYRING_CACHE_SECONDS + 10, interval=0.5, what="every server to serve the changed keyring")
