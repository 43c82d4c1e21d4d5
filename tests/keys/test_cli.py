"""`idp keys ...`, `idp purge` and `idp jobs`: contract, one-line errors, nothing half-done.

In-process through Click's CliRunner (`invoke_idp`), except `keys list` and a declined revocation,
run as real processes.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from idp import create_app
from idp.clock import utcnow
from idp.config import generate_key_encryption_key
from idp.db import db
from idp.keyring import service as keyring
from idp.keyring.models import SigningKey
from tests.keys.conftest import keys_by_state, sign_token, verifies_with
from tests.support import invoke_idp, run_idp


def listed(env, run=invoke_idp) -> list[dict]:
    result = run(["keys", "list", "--json"], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_keys_list_json_shows_algorithm_state_and_dates_but_no_private_half(app, idp_env):
    rows = listed(idp_env, run=run_idp)  # a real process: the console entry point's smoke test
    assert sorted((row["alg"], row["state"]) for row in rows) == [("ES256", "active"), ("ES256", "next"), ("RS256", "active"), ("RS256", "next")]
    assert set(rows[0]) == {"kid", "alg", "state", "created_at", "activated_at", "retired_at", "revoked_at"}


def test_rotate_now_then_again_is_refused_then_forced(app, idp_env, t0):
    # The pre-made next keys were published at t0; the lead time (1 h) has not passed in real time.
    refused = invoke_idp(["keys", "rotate", "--now"], idp_env)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1 and "may not have it before" in refused.stderr
    assert sorted((row["alg"], row["state"]) for row in listed(idp_env))[0] == ("ES256", "active")
    with app.app_context():
        before = keys_by_state("RS256")
    forced = invoke_idp(["keys", "rotate", "--now", "--force", "--alg", "RS256"], idp_env)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == f"RS256: {before['next'][0]} now signs; the previous key stays published until its tokens expire"
    with app.app_context():
        after = keys_by_state("RS256")
    assert after["active"] == before["next"] and after["retired"] == before["active"]


def test_flags_that_need_now_are_refused_without_it(app, idp_env):
    result = invoke_idp(["keys", "rotate", "--force"], idp_env)
    assert result.returncode == 2 and result.stderr.strip() == "error: --alg and --force go with --now"


def test_scheduled_rotation_by_hand_prints_counts(app, idp_env):
    result = invoke_idp(["keys", "rotate"], idp_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"activated": 0, "conflicts": 0, "created": 0, "purged": 0, "retired": 0, "waiting": 0}


def test_no_kid_starts_with_a_dash_so_every_kid_can_be_typed_as_an_argument(app_ctx):
    """A base64url thumbprint starts with "-" once in 64: of 200 keys, some would (about 96 %)."""
    from idp.keyring.models import KeyState

    kids = [keyring.generate_key("ES256", KeyState.RETIRED).kid for _ in range(200)]
    db.session.rollback()
    assert len(set(kids)) == 200 and [kid for kid in kids if kid.startswith("-")] == []


def test_revoke_warns_asks_and_writes_nothing_without_confirmation(app, idp_env):
    with app.app_context():
        kid = keys_by_state("RS256")["active"][0]
    # A real process: the prompt and the refusal as an operator's pipe sees them (CliRunner echoes the answer).
    declined = run_idp(["keys", "revoke", kid], idp_env, stdin="n\n")
    assert declined.returncode == 2
    assert "WARNING: revoking" in declined.stderr and "stops verifying" in declined.stderr
    assert declined.stderr.strip().endswith("Revoke it? [y/N]: error: not revoked: no confirmation (pass --yes to skip the question)")
    no_answer = invoke_idp(["keys", "revoke", kid], idp_env, stdin="")
    assert no_answer.returncode == 2
    assert {row["kid"]: row["state"] for row in listed(idp_env)}[kid] == "active"
    confirmed = invoke_idp(["keys", "revoke", kid], idp_env, stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert confirmed.stdout.strip() == f"revoked {kid}"
    states = {row["kid"]: row["state"] for row in listed(idp_env)}
    assert states[kid] == "revoked" and sorted(states.values()).count("active") == 2


def test_revoke_unknown_key_is_one_line_exit_2(app, idp_env):
    result = invoke_idp(["keys", "revoke", "no-such-kid", "--yes"], idp_env)
    assert result.returncode == 2 and result.stderr.strip() == "error: no signing key with kid 'no-such-kid'"


def test_rewrap_lets_an_old_key_encryption_key_be_dropped(app, idp_env, config):
    old = config["KEY_ENCRYPTION_KEYS"]
    new = generate_key_encryption_key()
    with_both = {**idp_env, "IDP_KEY_ENCRYPTION_KEYS": ",".join([new, *old])}
    only_new = {**idp_env, "IDP_KEY_ENCRYPTION_KEYS": new}
    with app.app_context():
        kids = [key.kid for key in db.session.scalars(select(SigningKey))]
    # Dropping the old key before rewrapping: nothing decrypts, nothing is changed.
    broken = invoke_idp(["keys", "rewrap"], only_new)
    assert broken.returncode == 2 and "no configured key-encryption key decrypts signing key" in broken.stderr
    first = invoke_idp(["keys", "rewrap"], with_both)
    assert first.returncode == 0, first.stderr
    assert f"rewrapped {len(kids)} keys" in first.stdout and f"({len(kids)} needed an older one)" in first.stdout
    again = invoke_idp(["keys", "rewrap"], with_both)
    assert "(0 needed an older one)" in again.stdout
    # With only the new key, every private key still decrypts (rewrap reads them all) and signs.
    after = invoke_idp(["keys", "rewrap"], only_new)
    assert after.returncode == 0 and "(0 needed an older one)" in after.stdout
    new_only_app = create_app({**config, "KEY_ENCRYPTION_KEYS": [new]})
    with new_only_app.app_context():
        for alg in ("RS256", "ES256"):
            token = sign_token(alg, issued_at=utcnow(), lifetime=60)
            assert verifies_with(token, keyring.jwks().body)
        db.session.remove()  # return the connection first: dispose() closes only idle ones
        db.engine.dispose()
    # And the old key alone no longer decrypts anything.
    assert invoke_idp(["keys", "rewrap"], {**idp_env, "IDP_KEY_ENCRYPTION_KEYS": ",".join(old)}).returncode == 2


def test_purge_and_jobs(app, idp_env):
    before = json.loads(invoke_idp(["jobs", "--json"], idp_env).stdout)
    assert [(row["job"], row["outcome"]) for row in before] == [("purge", "never run"), ("rotate_keys", "never run")]
    purged = invoke_idp(["purge", "--json"], idp_env)
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["refresh_tokens"] == 0
    after = {row["job"]: row for row in json.loads(invoke_idp(["jobs", "--json"], idp_env).stdout)}
    assert after["purge"]["outcome"] == "succeeded" and after["purge"]["finished_at"] >= after["purge"]["started_at"]
    assert after["purge"]["counts"] == json.loads(purged.stdout)
    table = invoke_idp(["jobs"], idp_env).stdout.splitlines()
    assert table[0].startswith("purge        succeeded") and table[1].startswith("rotate_keys  never run")
