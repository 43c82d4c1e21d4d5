"""User accounts: creation, validation, authentication, disabling."""

import pytest
from sqlalchemy import func, select

from idp import signout
from idp.db import db
from idp.errors import ValidationError
from idp.models import AuditEvent, User
from idp.security import hash_password
from idp.users import service


def count_users() -> int:
    return db.session.scalar(select(func.count()).select_from(User))


def test_create_user_hashes_password_and_normalises_email(app_ctx):
    user = service.create_user("  Alice@Example.COM ", "correct horse battery", name="Alice")
    assert user.email == "alice@example.com"
    assert user.password_hash.startswith("$argon2id$")
    assert "correct horse battery" not in user.password_hash
    assert len(user.subject) == 32 and user.token_version == 1
    assert db.session.scalar(select(AuditEvent.action)) == "user.created"


@pytest.mark.parametrize(
    ("email", "password", "field"),
    [
        ("not-an-email", "correct horse battery", "email"),
        ("a@b", "correct horse battery", "email"),
        ("a b@example.com", "correct horse battery", "email"),
        ("", "correct horse battery", "email"),
        ("bob@example.com", "", "password"),
        ("bob@example.com", "short", "password"),
        ("bob@example.com", "x" * 1025, "password"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(app_ctx, email, password, field):
    with pytest.raises(ValidationError) as caught:
        service.create_user(email, password)
    assert caught.value.field == field
    assert count_users() == 0


def test_duplicate_email_is_refused_case_insensitively(app_ctx):
    service.create_user("carol@example.com", "correct horse battery")
    with pytest.raises(ValidationError, match="already exists"):
        service.create_user("CAROL@example.com", "another long password")
    assert count_users() == 1


def test_authenticate_accepts_right_password_only(app_ctx):
    service.create_user("dave@example.com", "correct horse battery")
    assert service.authenticate("DAVE@example.com", "correct horse battery").email == "dave@example.com"
    assert service.authenticate("dave@example.com", "wrong password") is None
    assert service.authenticate("nobody@example.com", "correct horse battery") is None
    assert service.authenticate("dave@example.com", "x" * 5000) is None


def test_authenticate_upgrades_outdated_hash(app_ctx):
    from argon2 import PasswordHasher

    user = service.create_user("erin@example.com", "correct horse battery")
    user.password_hash = PasswordHasher(time_cost=1, memory_cost=8192).hash("correct horse battery")
    db.session.commit()
    old = user.password_hash
    assert service.authenticate("erin@example.com", "correct horse battery") is not None
    assert db.session.get(User, user.id).password_hash != old


def test_disabled_user_cannot_sign_in_and_version_is_bumped(app_ctx):
    user = service.create_user("frank@example.com", "correct horse battery")
    signout.disable_user(user, actor="test")
    signout.disable_user(user, actor="test")  # idempotent
    assert user.is_disabled and user.token_version == 2
    assert service.authenticate("frank@example.com", "correct horse battery") is None
