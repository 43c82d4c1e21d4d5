"""Signing in with email and password: throttle, argon2 verification, audit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from idp.audit.service import record
from idp.auth.throttle import SIGN_IN_FAILED, SIGNED_IN, account_key, is_throttled
from idp.db import db
from idp.errors import ValidationError
from idp.metrics import LOGIN_FAILURES, LOGIN_THROTTLED
from idp.users.models import User
from idp.users.service import authenticate, get_user_by_email, normalize_email

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignInAttempt:
    """The outcome of a sign-in attempt: the user, or why not (never which half was wrong)."""

    user: User | None
    throttled: bool = False


def attempt_sign_in(email: str, password: str, *, ip: str | None, now: datetime | None = None) -> SignInAttempt:
    """Check credentials unless the account or IP is throttled; audit the outcome.

    A failure is committed at once; a success is recorded in the open transaction, for the
    caller to commit with the session it starts.
    """
    key = account_key(email, get_user_by_email(email))
    if is_throttled(key, ip, now=now):
        # Not recorded as another failure: a locked-out attacker must not extend the window forever.
        log.warning("sign-in refused by throttle for %s from %s", key, ip)
        LOGIN_THROTTLED.inc()
        return SignInAttempt(None, throttled=True)
    user = authenticate(email, password)
    if user is None:
        record(SIGN_IN_FAILED, actor="anonymous", target=key, ip=ip, **_attempted(email))
        LOGIN_FAILURES.inc()
        db.session.commit()
        return SignInAttempt(None)
    record(SIGNED_IN, actor=f"user:{user.id}", target=f"user:{user.id}", ip=ip)
    return SignInAttempt(user)


def _attempted(email: str) -> dict:
    """The address tried, for the audit log, when it is a well-formed one."""
    try:
        return {"email": normalize_email(email)}
    except ValidationError:
        return {}
