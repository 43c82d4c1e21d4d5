"""Sign-out everywhere, and the account changes that imply it: password, admin rights, disabling, deletion.

The order is the point: the token version is bumped first (every older token, session and refresh
family then fails at its next use), then the user's sessions end (`session_ended`), then the
`signed_out_everywhere` receivers run (back-channel logout to clients holding offline grants),
and last the refresh families are revoked. Everything happens in the caller's transaction.
"""

from __future__ import annotations

from blinker import Namespace
from flask import current_app

from idp.audit.service import record
from idp.clock import utcnow
from idp.db import db, durable
from idp.errors import ValidationError
from idp.security import hash_password, verify_password
from idp.sessions.service import end_all_for_user
from idp.tokens.refresh import revoke_families
from idp.users.models import User
from idp.users.service import MAX_PASSWORD_LENGTH, bump_token_version, validate_password

_signals = Namespace()
# Sent with the user inside the transaction of a sign-out everywhere, after their sessions ended
# and before their refresh families are revoked.
signed_out_everywhere = _signals.signal("signed-out-everywhere")


def end_everything(user: User, *, reason: str, actor: str) -> None:
    """Bump the token version and end every session and refresh family of `user`.

    The bump alone already makes every older credential fail at its next use; ending the rows too
    frees them at once and tells relying parties (back-channel logout) without waiting.
    """
    bump_token_version(user, reason=reason, actor=actor)
    end_all_for_user(user.id, reason=reason, actor=actor)
    # Before the families are revoked: receivers (back-channel logout) look up the offline grants.
    signed_out_everywhere.send(current_app._get_current_object(), user=user)
    revoke_families(user_id=user.id, include_offline=True, reason=reason, actor=actor)


def sign_out_everywhere(user: User, *, actor: str) -> None:
    """End every session and token of `user`, offline grants included."""
    end_everything(user, reason="sign_out_everywhere", actor=actor)


def set_password(user: User, password: str, *, actor: str) -> None:
    """Set a new password (an admin's or the user's own act); every old credential dies."""
    validate_password(password)
    user.password_hash = hash_password(password)
    record("user.password_set", actor=actor, target=f"user:{user.id}")
    end_everything(user, reason="password_changed", actor=actor)


def change_password(user: User, current: str, new: str, *, actor: str, ip: str | None = None) -> None:
    """The user's own change: the current password must be right, else nothing changes."""
    ok, _ = verify_password(user.password_hash, (current or "")[:MAX_PASSWORD_LENGTH])
    if not ok:
        with durable("a refused password change, audited"):  # the refusal rolls back the rest
            record("user.password_change_failed", actor=actor, target=f"user:{user.id}", ip=ip)
        raise ValidationError("current password is wrong", field="current_password")
    set_password(user, new, actor=actor)


def set_admin(user: User, is_admin: bool, *, actor: str) -> None:
    """Grant or revoke admin rights; a change of rights ends every session of the user."""
    if user.is_admin == is_admin:
        return
    user.is_admin = is_admin
    record("user.admin_granted" if is_admin else "user.admin_revoked", actor=actor, target=f"user:{user.id}")
    end_everything(user, reason="admin_rights_changed", actor=actor)


def disable_user(user: User, *, actor: str = "system") -> None:
    """Disable a user and end everything they hold; idempotent."""
    if user.disabled_at is None:
        user.disabled_at = utcnow()
        record("user.disabled", actor=actor, target=f"user:{user.id}")
        end_everything(user, reason="disabled", actor=actor)


def delete_user(user: User, *, actor: str) -> None:
    """Delete a user; sessions, codes, consents and refresh families go with the row (ON DELETE CASCADE)."""
    end_everything(user, reason="deleted", actor=actor)
    record("user.deleted", actor=actor, target=f"user:{user.id}", email=user.email)
    db.session.delete(user)
    db.session.flush()  # the cascades run now, in the caller's transaction
