"""User accounts: creation with argon2id, authentication, disabling, token versions."""

from __future__ import annotations

import re

from sqlalchemy import select

from idp.audit.service import record
from idp.clock import utcnow
from idp.db import db
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


def create_user(email: str, password: str, *, name: str | None = None, is_admin: bool = False, actor: str = "system") -> User:
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
    db.session.commit()
    return user


def authenticate(email: str, password: str) -> User | None:
    """The user if the password is right and the account enabled; None otherwise, in equal time."""
    user = get_user_by_email(email) if len(password or "") <= MAX_PASSWORD_LENGTH else None
    ok, new_hash = verify_password(user.password_hash if user else None, (password or "")[:MAX_PASSWORD_LENGTH])
    if not ok or user is None or user.is_disabled:
        return None
    if new_hash:  # argon2 parameters changed since this hash was made: upgrade it now
        user.password_hash = new_hash
        db.session.commit()
    return user


def bump_token_version(user: User, *, reason: str, actor: str) -> None:
    """Invalidate every token, refresh family and session of `user` (caller commits)."""
    # Computed by the database, so two concurrent bumps never collapse into one.
    user.token_version = User.token_version + 1
    db.session.flush()
    record("user.token_version_bumped", actor=actor, target=f"user:{user.id}", reason=reason, token_version=user.token_version)


def end_everything(user: User, *, reason: str, actor: str) -> None:
    """Bump the token version and end every session and refresh family of `user` (caller commits).

    The bump alone already makes every older credential fail at its next use; ending the rows too
    frees them at once and tells relying parties (back-channel logout) without waiting.
    """
    from idp.oidc.backchannel import queue_offline_logout
    from idp.sessions.service import end_all_for_user
    from idp.tokens.refresh import revoke_families

    bump_token_version(user, reason=reason, actor=actor)
    end_all_for_user(user.id, reason=reason, actor=actor)
    queue_offline_logout(user)
    revoke_families(user_id=user.id, include_offline=True, reason=reason, actor=actor)


def sign_out_everywhere(user: User, *, actor: str) -> None:
    """End every session and token of `user`, offline grants included."""
    end_everything(user, reason="sign_out_everywhere", actor=actor)
    db.session.commit()


def set_password(user: User, password: str, *, actor: str) -> None:
    """Set a new password (an admin's or the user's own act); every old credential dies."""
    validate_password(password)
    user.password_hash = hash_password(password)
    record("user.password_set", actor=actor, target=f"user:{user.id}")
    end_everything(user, reason="password_changed", actor=actor)
    db.session.commit()


def change_password(user: User, current: str, new: str, *, actor: str, ip: str | None = None) -> None:
    """The user's own change: the current password must be right, else nothing changes."""
    ok, _ = verify_password(user.password_hash, (current or "")[:MAX_PASSWORD_LENGTH])
    if not ok:
        record("user.password_change_failed", actor=actor, target=f"user:{user.id}", ip=ip)
        db.session.commit()
        raise ValidationError("current password is wrong", field="current_password")
    set_password(user, new, actor=actor)


def set_admin(user: User, is_admin: bool, *, actor: str) -> None:
    """Grant or revoke admin rights; a change of rights ends every session of the user."""
    if user.is_admin == is_admin:
        return
    user.is_admin = is_admin
    record("user.admin_granted" if is_admin else "user.admin_revoked", actor=actor, target=f"user:{user.id}")
    end_everything(user, reason="admin_rights_changed", actor=actor)
    db.session.commit()


def disable_user(user: User, *, actor: str = "system") -> None:
    """Disable a user and end everything they hold; idempotent."""
    if user.disabled_at is None:
        user.disabled_at = utcnow()
        record("user.disabled", actor=actor, target=f"user:{user.id}")
        end_everything(user, reason="disabled", actor=actor)
    db.session.commit()


def enable_user(user: User, *, actor: str) -> None:
    """Let a disabled user sign in again (their old sessions and tokens stay dead)."""
    if user.disabled_at is not None:
        user.disabled_at = None
        record("user.enabled", actor=actor, target=f"user:{user.id}")
    db.session.commit()


def delete_user(user: User, *, actor: str) -> None:
    """Delete a user; sessions, codes, consents and refresh families go with the row (ON DELETE CASCADE)."""
    end_everything(user, reason="deleted", actor=actor)
    record("user.deleted", actor=actor, target=f"user:{user.id}", email=user.email)
    db.session.delete(user)
    db.session.commit()


def list_users(limit: int = 1000) -> list[User]:
    """Users ordered by id (oldest first)."""
    return list(db.session.scalars(select(User).order_by(User.id).limit(limit)))


def update_user(user: User, *, email: str, name: str | None, actor: str) -> None:
    """Change a user's email and display name (caller commits); raise ValidationError on bad or duplicate input."""
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

