"""Admin sign-in and re-authentication: the end-user password checks, behind the same throttle.

Sharing the end-user throttle (idp/auth/throttle.py: atomic counters per account and address,
per address, and per account from new addresses) means guesses on the admin form, the login page,
re-authentication and the account page's password change spend one budget. A right password
without admin rights is refused with `admin.sign_in_refused`; it reveals no more than the end-user
login page, where that password signs in.
"""

from __future__ import annotations

from dataclasses import dataclass

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.auth.service import Checked, attempt_sign_in, throttled_check
from idp.db import durable
from idp.security import verify_password
from idp.users.models import User

REFUSED = "admin.sign_in_refused"
REAUTH_FAILED = "admin.reauth_failed"


@dataclass(frozen=True)
class AdminSignIn:
    """The outcome of an attempt: the admin, or why not (`refusal`: credentials, not_admin, throttled)."""

    user: User | None = None
    refusal: str | None = None
    retry_after: int = 0


def attempt(email: str, password: str, *, ip: str | None) -> AdminSignIn:
    """Check an admin sign-in; refusals are committed, a success is left for the caller to commit with its session."""
    outcome = attempt_sign_in(email, password, ip=ip, form="admin_login")
    if outcome.throttled:
        return AdminSignIn(refusal="throttled", retry_after=outcome.retry_after)
    if outcome.user is None:
        return AdminSignIn(refusal="credentials")
    if not outcome.user.is_admin:
        with durable("a non-admin's refused admin sign-in, audited"):
            record(REFUSED, actor=Actor.user(outcome.user.id), target=f"user:{outcome.user.id}", ip=ip, reason="not_admin")
        return AdminSignIn(refusal="not_admin")
    return AdminSignIn(user=outcome.user)


def reauthenticate(user: User, password: str, *, ip: str | None) -> Checked[bool]:
    """Check a signed-in admin's password behind the throttle; a wrong one is audited (`durable`)."""
    checked = throttled_check(f"user:{user.id}", ip, lambda: verify_password(user.password_hash, password)[0], form="admin_reauth", actor=Actor.user(user.id))
    if checked.value is False:
        with durable("a failed admin re-authentication, audited"):
            record(REAUTH_FAILED, actor=Actor.user(user.id), target=f"user:{user.id}", ip=ip)
    return checked
