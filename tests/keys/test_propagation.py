"""Every web process sees a rotation or a revocation made elsewhere within KEYRING_CACHE_SECONDS, without a restart."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import create_engine, text

from idp.clock import utcnow
from idp.config import KEYRING_CACHE_SECONDS
from idp.keyring import service as keyring
from idp.keyring.service import _KeyringCache
from tests.keys.conftest import keys_by_state, served_after_cache_window, served_jwks, sign_token, verifies_with
from tests.support import invoke_idp


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def cache_clock(app):
    """Give the app a keyring cache whose clock the test drives."""
    clock = FakeMonotonic()
    app.extensions["idp.keyring_cache"] = _KeyringCache(clock=clock)
    return clock


def change_elsewhere(app, sql: str, **params) -> None:
    """Change the keyring through another connection, as another process would."""
    engine = create_engine(app.config["DATABASE_URL"])
    with engine.begin() as connection:
        connection.execute(text(sql), params)
    engine.dispose()


def served_kids(app) -> set[str]:
    return {key["kid"] for key in json.loads(keyring.jwks().body)["keys"]}


def test_a_revocation_made_elsewhere_is_seen_within_the_cache_window(app, cache_clock):
    with app.app_context():
        kid = keys_by_state("RS256")["active"][0]
        assert kid in served_kids(app)
        change_elsewhere(app, "UPDATE signing_keys SET state = 'revoked' WHERE kid = :kid", kid=kid)
        cache_clock.value += KEYRING_CACHE_SECONDS - 0.1
        assert kid in served_kids(app)  # still the cached view
        cache_clock.value += 0.1
        assert kid not in served_kids(app)
        assert keyring.verification_key(kid) is None


def test_a_rotation_made_elsewhere_moves_signing_within_the_cache_window(app, cache_clock):
    with app.app_context():
        states = keys_by_state("ES256")
        assert keyring.signing_key("ES256")[0] == states["active"][0]
        change_elsewhere(app, "UPDATE signing_keys SET state = 'retired' WHERE kid = :kid", kid=states["active"][0])
        change_elsewhere(app, "UPDATE signing_keys SET state = 'active' WHERE kid = :kid", kid=states["next"][0])
        cache_clock.value += KEYRING_CACHE_SECONDS - 0.1
        assert keyring.signing_key("ES256")[0] == states["active"][0]
        cache_clock.value += 0.1
        assert keyring.signing_key("ES256")[0] == states["next"][0]


@pytest.mark.slow
def test_served_replicas_drop_a_revoked_key_without_a_restart(app, start_server, idp_env):
    """Two `idp serve` processes (two gunicorn workers each); the CLI revokes outside them (in the test process:
    the servers learn of it only through the database)."""
    bases = [start_server(), start_server()]
    with app.app_context():
        token = sign_token("RS256", issued_at=utcnow(), lifetime=300)
    for base in bases:
        assert verifies_with(token, served_jwks(base))
    revoked = invoke_idp(["keys", "revoke", token["kid"], "--yes"], idp_env)
    assert revoked.returncode == 0, revoked.stderr
    served_after_cache_window(bases, lambda jwks: token["kid"] not in jwks, changed_at=time.monotonic())
    for base in bases:
        assert not verifies_with(token, served_jwks(base))
