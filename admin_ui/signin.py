"""Admin sign-in: password check, admin-rights check and throttling per account and per IP.

Failed attempts are audit events (`admin.sign_in_failed`), and the throttle counts them: no extra
table and no Redis, and every refusal is visible in the audit log and on the dashboard. Once an
account or an IP reaches its limit within the sliding window, sign-in is refused before any
password is checked, so guessing costs the attacker time and the server no argon2 work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from idp.audit.models import AuditEvent
from idp.audit.service import record
from idp.db import db
from idp.errors import ValidationError
from idp.users.models import User
from idp.users.service import authenticate, get_user_by_email, normalize_email

FAILED = "admin.sign_in_failed"
REAUTH_FAILED = "admin.reauth_failed"


@dataclass(frozen=True)
class SignIn:
    """The outcome of an attempt: the admin user, or why not (`refusal`) and, if throttled, for how long."""

    user: User | None = None
    refusal: str | None = None  # "credentials" | "not_admin" | "throttled"
    retry_after: int = 0


def account_key(email: str) -> str:
    """The audit target of an attempt on `email`: the user when one exists, else the email as typed."""
    user = get_user_by_email(email)
    if user is not None:
        return f"user:{user.id}"
    try:
        return f"email:{normalize_email(email)}"
    except ValidationError:
        return f"email:{(email or '').strip().lower()[:100]}"


def _failures(condition, since: datetime, limit: int, action: str = FAILED) -> tuple[int, datetime | None]:
    """How many `action` events match since `since` (reading at most `limit`), and the oldest counted."""
    recent = (
        select(AuditEvent.occurred_at)
        .where(AuditEvent.action == action, condition, AuditEvent.occurred_at >= since)
        .order_by(AuditEvent.occurred_at.desc())
        .limit(limit)
        .subquery()
    )
    count, oldest = db.session.execute(select(func.count(), func.min(recent.c.occurred_at))).one()
    return count, oldest


def retry_after(key: str, ip: str | None, now: datetime) -> int:
    """Seconds until this account and IP may try again; 0 when neither is over its limit."""
    config = current_app.config
    window = timedelta(seconds=config["ADMIN_SIGN_IN_WINDOW"])
    wait = 0
    checks = [(AuditEvent.target == key, config["ADMIN_SIGN_IN_MAX_FAILURES"])]
    if ip:
        checks.append((AuditEvent.ip == ip, config["ADMIN_SIGN_IN_MAX_FAILURES_PER_IP"]))
    for condition, limit in checks:
        count, oldest = _failures(condition, now - window, limit)
        if count >= limit and oldest is not None:
            # The window slides: the limit frees up when the oldest counted failure leaves it.
            wait = max(wait, int((oldest + window - now).total_seconds()) + 1)
    return wait


def attempt(email: str, password: str, *, ip: str | None, now: datetime) -> SignIn:
    """Check an admin sign-in attempt; failures are recorded and committed. The caller starts the session."""
    key = account_key(email)
    wait = retry_after(key, ip, now)
    if wait:
        return SignIn(refusal="throttled", retry_after=wait)
    user = authenticate(email, password)
    if user is None or not user.is_admin:
        # A right password without admin rights counts as a failure too: otherwise this form
        # would be an unthrottled password oracle for every end-user account.
        reason = "credentials" if user is None else "not_admin"
        record(FAILED, actor="anonymous", target=key, ip=ip, reason=reason)
        db.session.commit()
        return SignIn(refusal=reason)
    return SignIn(user=user)


def reauth_failed(user: User, *, ip: str | None, now: datetime) -> bool:
    """Record a wrong password at re-authentication; True when the session must end (too many in the window)."""
    record(REAUTH_FAILED, actor=f"user:{user.id}", target=f"user:{user.id}", ip=ip)
    db.session.flush()
    config = current_app.config
    limit = config["ADMIN_SIGN_IN_MAX_FAILURES"]
    count, _ = _failures(AuditEvent.target == f"user:{user.id}", now - timedelta(seconds=config["ADMIN_SIGN_IN_WINDOW"]), limit, REAUTH_FAILED)
    return count >= limit
