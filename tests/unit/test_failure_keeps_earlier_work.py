"""A step that fails undoes only itself: what an earlier step of the same request or command did stays
for the edge to commit (idp/db.py), and a record a refused request must keep is kept."""

import pytest
from sqlalchemy import literal_column, select, table

from admin_ui.queries import planner_estimate
from idp.clients.service import create_client
from idp.config import generate_key_encryption_key
from idp.db import db
from idp.errors import ValidationError
from idp.keyring.service import rewrap_keys
from idp.mfa.models import TotpFactor
from idp.mfa.totp import rewrap_secrets
from idp.models import Client, SigningKey
from idp.security import KeyEncryptor


def foreign_secret() -> bytes:
    """Encrypted under a key-encryption key the app does not list: no rewrap can read it."""
    return KeyEncryptor([generate_key_encryption_key()]).encrypt(b"JBSWY3DPEHPK3PXP")


def earlier_step() -> None:
    """The caller's own work, done before the step that fails (not yet committed)."""
    create_client("Earlier", redirect_uris=["https://rp.example.com/cb"])
    db.session.flush()


def committed_clients(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(Client.name)))


def test_a_refused_authenticator_rewrap_leaves_the_callers_work(app, make_user):
    owner = make_user()
    with app.app_context():
        db.session.add(TotpFactor(user_id=owner.id, secret_encrypted=foreign_secret()))
        db.session.commit()
        earlier_step()
        with pytest.raises(ValidationError, match="authenticator-app key"):
            rewrap_secrets(actor="test")
        db.session.commit()  # the caller decides: here it keeps what it did before
    assert committed_clients(app) == ["Earlier"]


def test_a_refused_signing_key_rewrap_leaves_the_callers_work_and_changes_no_key(app):
    with app.app_context():
        before = dict(db.session.execute(select(SigningKey.kid, SigningKey.private_jwk_encrypted)).all())
        first = db.session.scalar(select(SigningKey).order_by(SigningKey.id.desc()))
        first.private_jwk_encrypted = foreign_secret()  # the last key is unreadable: the others come first
        db.session.commit()
        before[first.kid] = first.private_jwk_encrypted
        earlier_step()
        with pytest.raises(ValidationError, match="signing key"):
            rewrap_keys(actor="test")
        db.session.commit()
    assert committed_clients(app) == ["Earlier"]
    with app.app_context():
        assert dict(db.session.execute(select(SigningKey.kid, SigningKey.private_jwk_encrypted)).all()) == before


def test_a_failed_row_estimate_keeps_the_requests_earlier_work(app):
    # On PostgreSQL the EXPLAIN fails; SQLite gives no estimate and runs none.
    with app.app_context():
        earlier_step()
        # Compiles, but EXPLAIN fails: the relation does not exist.
        assert planner_estimate(select(literal_column("x")).select_from(table("no_such_table"))) is None
        db.session.commit()
    assert committed_clients(app) == ["Earlier"]
