"""A user's second factors as a whole: what an admin sees, the admin's reset, the dashboard's counts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, distinct, func, select, union

from idp.audit.service import record
from idp.db import db
from idp.mfa import policy, recovery, totp
from idp.mfa.models import Passkey, RecoveryCode, TotpFactor
from idp.mfa.passkeys import user_passkeys


@dataclass(frozen=True)
class FactorSummary:
    """What protects one account."""

    totp: TotpFactor | None
    recovery_left: int
    passkeys: list[Passkey]
    required: bool


def summary(user_id: int) -> FactorSummary:
    """The user's authenticator app, recovery codes left, passkeys, and whether a factor is required."""
    return FactorSummary(totp.confirmed_factor(user_id), recovery.remaining(user_id), user_passkeys(user_id), policy.user_requires_mfa(user_id))


def reset(user_id: int, *, actor: str) -> int:
    """Remove every factor of a user (lost device): they sign in with the password again; audited."""
    removed = 0
    for model in (TotpFactor, RecoveryCode, Passkey):
        removed += db.session.execute(delete(model).where(model.user_id == user_id)).rowcount
    record("mfa.factors_reset", actor=actor, target=f"user:{user_id}", removed=removed)
    return removed


def counts() -> dict[str, int]:
    """How many users have a passkey, and how many any second factor (app or passkey)."""
    with_passkey = select(Passkey.user_id)
    with_app = select(TotpFactor.user_id).where(TotpFactor.confirmed_at.is_not(None))
    either = union(with_passkey, with_app).subquery()
    return {
        "with_passkey": db.session.scalar(select(func.count(distinct(Passkey.user_id)))),
        "with_second_factor": db.session.scalar(select(func.count()).select_from(either)),
    }
