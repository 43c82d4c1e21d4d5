"""Recording audit events; called by services, never by templates."""

from __future__ import annotations

from typing import Any

from idp.audit.models import AuditEvent
from idp.clock import utcnow
from idp.db import db


def record(action: str, *, actor: str, target: str | None = None, ip: str | None = None, **details: Any) -> AuditEvent:
    """Add an audit event to the current transaction (it commits or rolls back with the change)."""
    event = AuditEvent(action=action, actor=actor, target=target, ip=ip, details=details, occurred_at=utcnow())
    db.session.add(event)
    return event
