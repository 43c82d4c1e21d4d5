"""Admin sign-in: the end-user sign-in (same throttle, same audit events) plus the admin-rights check.

Sharing the end-user throttle (idp.auth.throttle: failures counted from the audit log per account
and per IP) means guesses on the admin form and on the login page spend one budget. A right
password without admin rights is refused with `admin.sign_in_refused`; it reveals no more than the
end-user login page, where that password signs in.

Re-authentication (a signed-in admin confirming their password) has its own count: too many wrong
passwords within the window end the session, so a stolen admin cookie is no password oracle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from idp.audit.models import AuditEvent
from idp.audit.service import record
from idp.auth.service import attempt_sign_in
from idp.db import db
from idp.users.models import User

REFUSED = "admin.sign_in_refused"
REAUTH_FAILED = "admin.reauth_failed"


@dataclass(frozen=True)
class AdminSignIn:
    """The outcome of an attempt: the admin, or why not (`refusal`: credentials, not_admin, throttled)."""

    user: User | None = None
    refusal: str | None = None


def attempt(email: str, password: str, *, ip: str | None, now: datetime | None = None) -> AdminSignIn:
    """Check an admin sign-in; refusals are committed, a success is left for the caller to commit with its session."""
    outcome = attempt_sign_in(email, password, ip=ip, now=now)
    if outcome.throttled:
        return AdminSignIn(refusal="throttled")
    if outcome.user is None:
        return AdminSignIn(refusal="credentials")
    if not outcome.user.is_admin:
        record(REFUSED, actor=f"user:{outcome.user.id}", target=f"user:{outcome.user.id}", ip=ip, reason="not_admin")
        db.session.commit()
        return AdminSignIn(refusal="not_admin")
    return AdminSignIn(user=outcome.user)


def reauth_failed(user: User, *, ip: str | None, now: datetime) -> bool:
    """Record a wrong password at re-authentication; True when the session must end (too many in the window)."""
    record(REAUTH_FAILED, actor=f"user:{user.id}", target=f"user:{user.id}", ip=ip)
    db.session.flush()
    config = current_app.config
    since = now - timedelta(seconds=config["LOGIN_THROTTLE_WINDOW"])
    failures = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == REAUTH_FAILED, AuditEvent.target == f"user:{user.id}", AuditEvent.occurred_at > since))
    return failures >= config["LOGIN_THROTTLE_PER_ACCOUNT"]
