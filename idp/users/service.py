"""User accounts: creation with argon2id, authentication, token versions, enabling, edits (the changes that end everything: idp/signout.py)."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.db import db, durable
from idp.errors import NotFoundError, ValidationError
from idp.security import hash_password, verify_password
from idp.users.models import User

# Deliberately simple: one @, no spaces or control characters, a dotted domain. Deliverability is
# the mail server's business; this only keeps garbage out of the login identifier.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes the whole input; cap it so a login cannot be made expensive


def normalize_email(email: str) -> str:
    """Lower-case and trim an email address; raise ValidationError if it is malformed."""
    email = (email or "").strip().lower()
    if len(email) > 320 or not _EMAIL.match(email):
        raise ValidationError("email address is malformed", field="email")
    return email


def validate_password(password: str) -> None:
    """Refuse empty, short and absurdly long passwords."""
    if not password:
        raise ValidationError("password must not be empty", field="password")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"password must be at least {MIN_PASSWORD_LENGTH} characters", field="password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(f"password must be at most {MAX_PASSWORD_LENGTH} characters", field="password")


def get_user_by_email(email: str) -> User | None:
    """The user with this email (case-insensitive), or None."""
    try:
        email = normalize_email(email)
    except ValidationError:
        return None
    return db.session.scalar(select(User).where(User.email == email))


def require_user(email: str) -> User:
    """The user with this email; raise NotFoundError if there is none."""
    user = get_user_by_email(email)
    if user is None:
        raise NotFoundError(f"no user with email {email!r}")
    return user


def create_user(email: str, password: str, *, name: str | None = None, is_admin: bool = False, actor: str = Actor.SYSTEM) -> User:
    """Create and commit a user; raise ValidationError on bad or duplicate input (nothing written)."""
    email = normalize_email(email)
    validate_password(password)
    if name is not None:
        name = name.strip() or None
        if name and len(name) > 200:
            raise ValidationError("name must be at most 200 characters", field="name")
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise ValidationError(f"a user with email {email!r} already exists", field="email")
    user = User(email=email, name=name, password_hash=hash_password(password), is_admin=is_admin)
    db.session.add(user)
    db.session.flush()
    record("user.created", actor=actor, target=f"user:{user.id}", is_admin=is_admin)
    return user


def authenticate(email: str, password: str) -> User | None:
    """The user if the password is right and the account enabled; None otherwise, in equal time."""
    user = get_user_by_email(email) if len(password or "") <= MAX_PASSWORD_LENGTH else None
    ok, new_hash = verify_password(user.password_hash if user else None, (password or "")[:MAX_PASSWORD_LENGTH])
    if not ok or user is None or user.is_disabled:
        return None
    if new_hash:  # argon2 parameters changed since this hash was made: upgrade it now
        # Now, not at the edge: the throttle then writes on a connection of its own, and SQLite
        # lets one writer at a time (idp/auth/throttle.py).
        with durable("an upgraded password hash, before the throttle's own connection writes"):
            user.password_hash = new_hash
    return user


# The class of the transaction-level advisory locks on a user's token version (PostgreSQL's
# two-key form, which never collides with the one-key job locks of idp/jobs/locks.py).
TOKEN_VERSION_LOCK_CLASS = 0x746F6B76  # "tokv"


def lock_token_version(user_id: int, *, shared: bool) -> None:
    """Hold the user's token-version lock until the transaction ends (PostgreSQL; a no-op on SQLite).

    A refresh rotation holds it shared while it checks and issues, a bump or a disabling holds it
    exclusive from before its write to its commit: so a rotation either sees a committed bump or
    commits before the bump goes on (and then revokes what it issued). Unlike a share lock on the
    user's row, any number of rotations hold it at once without writing the row (no MultiXacts).
    SQLite's single write lock already orders a rotation and a bump.
    """
    if db.session.get_bind().dialect.name != "postgresql":
        return
    take = func.pg_advisory_xact_lock_shared if shared else func.pg_advisory_xact_lock
    with db.session.no_autoflush:  # taken before this transaction's pending writes to the user's row
        db.session.execute(select(take(TOKEN_VERSION_LOCK_CLASS, user_id)))


def bump_token_version(user: User, *, reason: str, actor: str) -> None:
    """Invalidate every token, refresh family and session of `user`."""
    lock_token_version(user.id, shared=False)  # waits for rotations in flight (idp/tokens/refresh.py)
    # Computed by the database, so two concurrent bumps never collapse into one.
    user.token_version = User.token_version + 1
    db.session.flush()
    record("user.token_version_bumped", actor=actor, target=f"user:{user.id}", reason=reason, token_version=user.token_version)


def enable_user(user: User, *, actor: str) -> None:
    """Let a disabled user sign in again (their old sessions and tokens stay dead)."""
    if user.disabled_at is not None:
        user.disabled_at = None
        record("user.enabled", actor=actor, target=f"user:{user.id}")


def list_users(limit: int = 1000) -> list[User]:
    """Users ordered by id (oldest first)."""
    return list(db.session.scalars(select(User).order_by(User.id).limit(limit)))


def update_user(user: User, *, email: str, name: str | None, actor: str) -> None:
    """Change a user's email and display name; raise ValidationError on bad or duplicate input."""
    email = normalize_email(email)
    name = (name or "").strip() or None
    if name and len(name) > 200:
        raise ValidationError("name must be at most 200 characters", field="name")
    if email != user.email and db.session.scalar(select(User.id).where(User.email == email, User.id != user.id)) is not None:
        raise ValidationError(f"a user with email {email!r} already exists", field="email")
    changed = sorted(field for field, value in (("email", email), ("name", name)) if getattr(user, field) != value)
    if "email" in changed:
        user.email_verified_at, user.pending_email = None, None  # nobody proved the new address yet
    user.email, user.name = email, name
    if changed:
        record("user.updated", actor=actor, target=f"user:{user.id}", fields=changed)

