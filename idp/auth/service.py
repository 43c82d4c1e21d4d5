"""Checking passwords behind the throttle; signing in with email and password: argon2, audit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.auth import throttle
from idp.db import commit_now, durable
from idp.errors import ValidationError
from idp.metrics import LOGIN_FAILURES, LOGIN_THROTTLED
from idp.users.models import User
from idp.users.service import authenticate, get_user_by_email, normalize_email

log = logging.getLogger(__name__)

SIGN_IN_FAILED = "user.sign_in_failed"
SIGNED_IN = "user.signed_in"
T = TypeVar("T")


@dataclass(frozen=True)
class Checked(Generic[T]):
    """The outcome of a throttled password check: what `verify` returned, or how long to wait."""

    value: T | None
    retry_after: int = 0  # > 0 when the throttle refused the check (nothing was evaluated)


def throttled_check(account: str, ip: str | None, verify: Callable[[], T | None], *, form: str, actor: str = Actor.ANONYMOUS) -> Checked[T]:
    """Run `verify` (an argon2 check, truthy when right) only if the throttle lets it; audit refusals.

    The failure is counted before `verify` runs and given back if it succeeds, so parallel
    guesses cannot outrun the count (see idp/auth/throttle.py).
    """
    try:
        reservation = throttle.reserve(account, ip)
    except throttle.Throttled as refusal:
        log.warning("password check refused by throttle (%s) for %s from %s", refusal.kind, account, ip)
        # The request answers 429 and so rolls back; the refusal's audit event must stay.
        with durable("the throttle's refusal, audited"):
            throttle.record_refusal(refusal, account=account, ip=ip, form=form, actor=actor)
        LOGIN_THROTTLED.inc()
        return Checked(None, refusal.retry_after)
    value = verify()
    if value:
        # What a right check wrote (a spent code, a changed password) is committed before the
        # throttle gives its reservation back on a connection of its own: SQLite has one writer.
        commit_now("a right check's writes, before the throttle's own connection writes")
        throttle.succeeded(reservation)
    return Checked(value)


@dataclass(frozen=True)
class SignInAttempt:
    """The outcome of a sign-in attempt: the user, or why not (never which half was wrong)."""

    user: User | None
    retry_after: int = 0  # > 0 when throttled

    @property
    def throttled(self) -> bool:
        """True when the throttle refused the attempt without checking it."""
        return self.retry_after > 0


def attempt_sign_in(email: str, password: str, *, ip: str | None, form: str = "login") -> SignInAttempt:
    """Check credentials unless the throttle refuses; audit the outcome.

    A failure's audit event is kept at once (`durable`: the request answers 401 and rolls back);
    a success is recorded in the request's transaction, with the session it starts.
    """
    key = throttle.account_key(email, get_user_by_email(email))
    checked = throttled_check(key, ip, lambda: authenticate(email, password), form=form)
    if checked.retry_after:
        return SignInAttempt(None, retry_after=checked.retry_after)
    if checked.value is None:
        with durable("a failed sign-in, audited"):
            record(SIGN_IN_FAILED, actor=Actor.ANONYMOUS, target=key, ip=ip, **_attempted(email))
        LOGIN_FAILURES.inc()
        return SignInAttempt(None)
    user = checked.value
    record(SIGNED_IN, actor=Actor.user(user.id), target=f"user:{user.id}", ip=ip)
    return SignInAttempt(user)


def _attempted(email: str) -> dict:
    """The address tried, for the audit log, when it is a well-formed one."""
    try:
        return {"email": normalize_email(email)}
    except ValidationError:
        return {}
