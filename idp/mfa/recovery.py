"""Recovery codes: ten single-use codes, shown once, stored as SHA-256 digests."""

from __future__ import annotations

import secrets

from sqlalchemy import delete, func, select, update

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.clock import utcnow
from idp.db import db
from idp.mfa.models import RecoveryCode
from idp.security import digest

CODE_COUNT = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper


def _normalize(code: str) -> str:
    return "".join(char for char in (code or "").lower() if char.isalnum())


def _new_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(15))  # ~74 bits
    return "-".join(raw[i:i + 5] for i in range(0, 15, 5))


def regenerate(user_id: int, *, actor: str) -> list[str]:
    """Replace the user's codes with ten new ones and return them (the only time they are seen)."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = [_new_code() for _ in range(CODE_COUNT)]
    db.session.add_all(RecoveryCode(user_id=user_id, code_digest=digest(_normalize(code))) for code in codes)
    db.session.flush()
    record("mfa.recovery_codes_generated", actor=actor, target=f"user:{user_id}", count=CODE_COUNT)
    return codes


def remaining(user_id: int) -> int:
    """How many unused codes the user has left."""
    return db.session.scalar(select(func.count()).select_from(RecoveryCode).where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)))


def spend(user_id: int, code: str) -> int | None:
    """Use one code (one conditional UPDATE: it works once, even raced); return how many remain, or None."""
    normalized = _normalize(code)
    if len(normalized) != 15:
        return None
    used = db.session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.code_digest == digest(normalized), RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if used != 1:
        return None
    left = remaining(user_id)
    record("mfa.recovery_code_used", actor=Actor.user(user_id), target=f"user:{user_id}", remaining=left)
    return left


def remove_all(user_id: int) -> None:
    """Delete the user's codes (their last second factor went)."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
