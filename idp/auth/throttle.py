"""Throttling of failed sign-ins, counted from the audit log per account and per IP address.

Unknown email addresses are counted exactly like known accounts, so the throttle itself does
not reveal which accounts exist. A successful sign-in clears the account's count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from idp.audit.models import AuditEvent
from idp.clock import utcnow
from idp.db import db
from idp.security import digest
from idp.users.models import User

SIGN_IN_FAILED = "user.sign_in_failed"
SIGNED_IN = "user.signed_in"


def account_key(email: str, user: User | None) -> str:
    """The audit target a sign-in attempt is counted under: the user, or the (hashed) unknown email."""
    if user is not None:
        return f"user:{user.id}"
    # Attempted addresses of unknown accounts are kept out of the target column (which is
    # indexed and short); the digest still groups repeated attempts on the same address.
    return "email:" + digest((email or "").strip().lower())[:40]


def failures_for_account(key: str, *, now: datetime | None = None) -> int:
    """Failed sign-ins of one account within the window, since its last successful one."""
    now = now or utcnow()
    since = now - timedelta(seconds=current_app.config["LOGIN_THROTTLE_WINDOW"])
    last_success = db.session.scalar(select(func.max(AuditEvent.occurred_at)).where(AuditEvent.action == SIGNED_IN, AuditEvent.target == key))
    if last_success is not None and last_success > since:
        since = last_success
    return db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == SIGN_IN_FAILED, AuditEvent.target == key, AuditEvent.occurred_at > since)
    )


def failures_from_ip(ip: str | None, *, now: datetime | None = None) -> int:
    """Failed sign-ins from one IP address within the window."""
    if not ip:
        return 0
    since = (now or utcnow()) - timedelta(seconds=current_app.config["LOGIN_THROTTLE_WINDOW"])
    return db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == SIGN_IN_FAILED, AuditEvent.occurred_at > since, AuditEvent.ip == ip)
    )


def is_throttled(key: str, ip: str | None, *, now: datetime | None = None) -> bool:
    """True when the account or the IP address has failed too often lately."""
    config = current_app.config
    return failures_for_account(key, now=now) >= config["LOGIN_THROTTLE_PER_ACCOUNT"] or failures_from_ip(ip, now=now) >= config["LOGIN_THROTTLE_PER_IP"]
