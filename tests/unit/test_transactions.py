"""One transaction per request, task and CLI command, committed at the edge (idp/db.py).

A request, task or command that fails after a service changed something leaves nothing behind; the
records a failing request must keep (`durable`) are kept; a commit that fails is never answered as
a success.
"""

import json

import click
import pytest
from sqlalchemy import func, select

from idp.extensions import csrf
from idp.audit.service import record
from idp.db import db, durable
from idp.clients.service import create_client
from idp.models import AuditEvent, Client, SigningKey, User
from idp.security import KeyEncryptor
from idp.config import generate_key_encryption_key
from idp.mfa.models import TotpFactor
from tests.support import invoke_idp


def actions(app) -> list[str]:
    """Every audit action stored, read in a fresh context (what was committed)."""
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def users(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(User.id)))


def clients(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Client.id)))


def register_client() -> None:
    """A service call that changes rows (a client and its audit event); it committed itself before."""
    create_client("Half-written", redirect_uris=["https://rp.example.com/cb"])


@pytest.fixture
def route(app):
    """Mount a POST test view at /test/<name> (CSRF-exempt), answering as production does (no propagation)."""
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def add(name: str, view) -> str:
        view.__name__ = f"txn_test_{name}"
        app.add_url_rule(f"/test/{name}", view.__name__, csrf.exempt(view), methods=["POST"])
        return f"/test/{name}"

    return add


def change_then(outcome):
    """A view that changes rows through a service and then ends with `outcome`."""

    def view():
        register_client()
        return outcome()

    return view


def fail():
    raise RuntimeError("the view fails after the change")


@pytest.mark.parametrize("outcome, status", [
    (fail, 500),
    (lambda: ("refused", 400), 400),
    (lambda: ("forbidden", 403), 403),
])
def test_a_request_that_fails_after_a_service_change_leaves_no_row(app, client, route, outcome, status):
    path = route("fails", change_then(outcome))
    assert client.post(path).status_code == status
    assert clients(app) == 0
    assert "client.created" not in actions(app)


@pytest.mark.parametrize("outcome, status", [(lambda: ("ok", 200), 200), (lambda: ("", 303, {"Location": "/"}), 303)])
def test_a_request_that_succeeds_commits_its_changes_once_at_the_edge(app, client, route, outcome, status):
    path = route("succeeds", change_then(outcome))
    assert client.post(path).status_code == status
    assert clients(app) == 1
    assert actions(app) == ["client.created"]


def test_a_commit_that_fails_at_the_edge_is_an_error_never_a_success(app, client, route):
    def view():
        # Two rows one unique index refuses, found only when the edge flushes and commits.
        db.session.add(User(email="twice@example.com", password_hash="x"))
        db.session.add(User(email="twice@example.com", password_hash="x"))
        return "looks fine"

    response = client.post(route("commit-fails", view))
    assert response.status_code == 500 and b"looks fine" not in response.data
    assert users(app) == 0


def test_durable_records_survive_the_failure_the_rest_does_not(app, client, route):
    def view():
        with durable("the test's record of a refusal"):
            record("test.refused", actor="test")
        record("test.not_kept", actor="test")
        return "refused", 400

    assert client.post(route("durable", view)).status_code == 400
    assert actions(app) == ["test.refused"]


def test_a_task_that_fails_mid_way_writes_nothing_and_one_that_returns_commits(app):
    celery = app.extensions["celery"]

    @celery.task(name="test.txn_writes")
    def writes(fail: bool) -> None:
        register_client()
        if fail:
            raise RuntimeError("the task fails after the change")

    assert writes.apply(kwargs={"fail": True}).failed()
    assert clients(app) == 0 and actions(app) == []
    assert writes.apply(kwargs={"fail": False}).successful()
    assert clients(app) == 1 and actions(app) == ["client.created"]


def test_a_cli_command_that_fails_mid_way_writes_nothing(app, idp_env, make_user):
    """`idp keys rewrap` re-encrypts every signing key, then meets an authenticator-app key no listed
    key-encryption key decrypts: the signing keys it already rewrapped are not written either."""
    owner = make_user()
    with app.app_context():
        before = dict(db.session.execute(select(SigningKey.kid, SigningKey.private_jwk_encrypted)).all())
        foreign = KeyEncryptor([generate_key_encryption_key()]).encrypt(b"JBSWY3DPEHPK3PXP")
        db.session.add(TotpFactor(user_id=owner.id, secret_encrypted=foreign))
        db.session.commit()
    result = invoke_idp(["keys", "rewrap"], idp_env)
    assert result.returncode == 2 and "authenticator-app key" in result.stderr
    with app.app_context():
        after = dict(db.session.execute(select(SigningKey.kid, SigningKey.private_jwk_encrypted)).all())
    assert before and after == before
    assert "keys.rewrapped" not in actions(app)


def test_a_with_app_command_runs_in_one_transaction(app, idp_env):
    """The `with_app` wrapper of idp/manage.py: a command that raises after writing leaves nothing."""
    from idp.commands import cli
    from idp.manage import with_app

    @cli.command("txn-test-fails")
    @with_app()
    def fails(app_) -> None:
        register_client()
        raise click.ClickException("failed after the change")

    try:
        result = invoke_idp(["txn-test-fails"], idp_env)
    finally:
        cli.commands.pop("txn-test-fails")
    assert result.returncode == 1 and "failed after the change" in result.stderr
    assert clients(app) == 0 and "client.created" not in actions(app)
    created = invoke_idp(["users", "create", "--email", "cli@example.com", "--password-stdin"], idp_env, stdin="a long password\n")
    assert created.returncode == 0 and json.loads(created.stdout)["email"] == "cli@example.com"
    assert users(app) == 1
