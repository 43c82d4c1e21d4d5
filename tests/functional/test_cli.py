"""The `idp` command: contract, idempotence, one-line errors, nothing written.

The contract runs in-process through Click's CliRunner (`invoke_idp`); `idp init` on a fresh
directory and a bad configuration run as real processes (`run_idp`), the smoke tests of the
console entry point.
"""

import json

import pytest
from sqlalchemy import func, select, text

from idp.db import db
from idp.models import Client, User
from tests.support import invoke_idp, run_idp


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_init_on_fresh_embedded_default_writes_secrets_schema_and_keys(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_INSTANCE_DIR=str(tmp_path / "instance"), IDP_KEYS_DIR=str(tmp_path / "keys"))
    first = run_idp(["init"], env)
    assert first.returncode == 0, first.stderr
    assert "WARNING: generated" in first.stderr
    assert (tmp_path / "keys" / "secret-key").stat().st_mode & 0o077 == 0
    assert "signing keys: 4 created" in first.stdout
    # The real process above is the smoke test; idempotence is the same contract in-process.
    second = invoke_idp(["init"], env)
    assert second.returncode == 0 and "already present" in second.stdout and "WARNING" not in second.stderr
    listed = json.loads(invoke_idp(["keys", "list", "--json"], env).stdout)
    assert sorted((k["alg"], k["state"]) for k in listed) == [("ES256", "active"), ("ES256", "next"), ("RS256", "active"), ("RS256", "next")]


def test_users_create_list_disable(app, idp_env):
    created = invoke_idp(["users", "create", "--email", "Ann@Example.com", "--password-stdin", "--name", "Ann", "--admin"], idp_env, stdin="a long password\n")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["email"] == "ann@example.com"
    listed = json.loads(invoke_idp(["users", "list", "--json"], idp_env).stdout)
    assert [(u["email"], u["is_admin"], u["disabled"]) for u in listed] == [("ann@example.com", True, False)]
    assert invoke_idp(["users", "disable", "ann@example.com"], idp_env).returncode == 0
    assert json.loads(invoke_idp(["users", "list", "--json"], idp_env).stdout)[0]["disabled"] is True


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--email", "not-an-email"], "a long password\n", "email address is malformed"),
        (["--email", "bob@example.com"], "\n", "password must not be empty"),
        (["--email", "bob@example.com"], "", "password must not be empty"),
    ],
)
def test_users_create_bad_input_is_one_line_exit_2_nothing_written(app, idp_env, args, stdin, message):
    result = invoke_idp(["users", "create", *args, "--password-stdin"], idp_env, stdin=stdin)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {message}"
    assert count(app, User) == 0


def test_users_create_duplicate_is_refused(app, idp_env, make_user):
    make_user(email="dup@example.com")
    result = invoke_idp(["users", "create", "--email", "DUP@example.com", "--password-stdin"], idp_env, stdin="a long password\n")
    assert result.returncode == 2 and "already exists" in result.stderr
    assert count(app, User) == 1


def test_clients_create_json_contract(app, idp_env):
    result = invoke_idp(
        ["clients", "create", "--name", "Web App", "--redirect-uri", "https://rp.example.com/cb", "--redirect-uri", "http://127.0.0.1:3000/cb",
         "--post-logout-redirect-uri", "https://rp.example.com/bye", "--scope", "openid profile email offline_access", "--json"],
        idp_env,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"client_id", "client_secret", "name"}
    assert document["client_secret"].startswith("idp_cs_")
    public = json.loads(invoke_idp(["clients", "create", "--name", "SPA", "--public", "--redirect-uri", "https://spa.example.com/cb", "--json"], idp_env).stdout)
    assert "client_secret" not in public
    listed = json.loads(invoke_idp(["clients", "list", "--json"], idp_env).stdout)
    assert [c["name"] for c in listed] == ["Web App", "SPA"]
    assert document["client_secret"] not in invoke_idp(["clients", "list", "--json"], idp_env).stdout


def test_clients_create_and_update_the_id_token_claims(app, idp_env):
    created = invoke_idp(["clients", "create", "--name", "Lean", "--redirect-uri", "https://rp.example.com/cb",
                          "--id-token-claims", "minimal", "--json"], idp_env)
    assert created.returncode == 0, created.stderr
    client_id = json.loads(created.stdout)["client_id"]
    with app.app_context():
        assert db.session.scalar(select(Client.id_token_claims).where(Client.client_id == client_id)) == "minimal"
    updated = invoke_idp(["clients", "update", client_id, "--id-token-claims", "standard"], idp_env)
    assert updated.returncode == 0 and updated.stdout.strip() == f"updated {client_id}: id_token_claims"
    with app.app_context():
        assert db.session.scalar(select(Client.id_token_claims).where(Client.client_id == client_id)) == "standard"
    again = invoke_idp(["clients", "update", client_id, "--id-token-claims", "standard"], idp_env)
    assert again.stdout.strip() == f"nothing changed for {client_id}"
    bad = invoke_idp(["clients", "update", client_id, "--scope", "openid payments"], idp_env)
    assert bad.returncode == 2 and "unknown scope 'payments'" in bad.stderr
    missing = invoke_idp(["clients", "update", "no-such-client", "--name", "X"], idp_env)
    assert missing.returncode == 2 and "no client with client_id" in missing.stderr


def test_a_commit_the_database_refuses_prints_no_success(app, idp_env, make_client):
    """The output follows the command's commit: a constraint that fails the commit leaves only the error."""
    first, _ = make_client(name="First")
    second, _ = make_client(name="Second")
    # A real constraint met only when the command commits (update_client writes nothing before it).
    with app.app_context():
        db.session.execute(text("CREATE UNIQUE INDEX uq_test_client_name ON clients (name)"))
        db.session.commit()
    try:
        refused = invoke_idp(["clients", "update", second.client_id, "--name", "First"], idp_env)
    finally:
        with app.app_context():
            db.session.execute(text("DROP INDEX uq_test_client_name"))
            db.session.commit()
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert len(refused.stderr.strip().splitlines()) == 1 and refused.stderr.startswith("error: nothing was written; the database refused it:")
    with app.app_context():
        assert db.session.scalar(select(Client.name).where(Client.client_id == second.client_id)) == "Second"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--redirect-uri", "/relative"], "must be absolute"),
        (["--redirect-uri", "https://rp.example.com/cb#x"], "fragment"),
        (["--redirect-uri", "http://rp.example.com/cb"], "non-loopback"),
        (["--redirect-uri", "https://rp.example.com/cb", "--grant-type", "password"], "unknown grant type 'password'"),
    ],
)
def test_clients_create_bad_input_is_one_line_exit_2_nothing_written(app, idp_env, args, message):
    result = invoke_idp(["clients", "create", "--name", "RP", *args, "--json"], idp_env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert count(app, Client) == 0


def test_bad_configuration_is_one_line_exit_2(idp_env):
    result = run_idp(["users", "list"], {**idp_env, "IDP_ISSUER": "http://idp.example.com"})
    assert result.returncode == 2
    assert result.stderr.strip() == "error: IDP_ISSUER='http://idp.example.com' uses http on a non-loopback host; use https"


def test_unreachable_database_is_one_line(idp_env):
    result = invoke_idp(["users", "list"], {**idp_env, "IDP_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"})
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: cannot use the database")


def test_users_set_password_and_sign_out_bump_the_token_version(app, idp_env, make_user):
    user = make_user(email="gus@example.com")
    changed = invoke_idp(["users", "set-password", "gus@example.com", "--password-stdin"], idp_env, stdin="a brand new password\n")
    assert changed.returncode == 0, changed.stderr
    weak = invoke_idp(["users", "set-password", "gus@example.com", "--password-stdin"], idp_env, stdin="short\n")
    assert weak.returncode == 2 and weak.stderr.strip() == "error: password must be at least 8 characters"
    assert invoke_idp(["users", "sign-out", "gus@example.com"], idp_env).returncode == 0
    missing = invoke_idp(["users", "sign-out", "nobody@example.com"], idp_env)
    assert missing.returncode == 2 and missing.stderr.strip() == "error: no user with email 'nobody@example.com'"
    with app.app_context():
        assert db.session.get(User, user.id).token_version == 3
        from idp.users.service import authenticate

        assert authenticate("gus@example.com", "a brand new password") is not None
