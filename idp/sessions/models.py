"""The UserSession model."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.db import db


class SessionKind(StrEnum):
    """The two kinds of browser session, each behind its own cookie: signing in to apps, and the admin UI."""

    SSO = "sso"
    ADMIN = "admin"


class UserSession(db.Model):
    """A browser session; deleting the row signs the browser out at its next request."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_user_id", "user_id"),
        Index("ix_sessions_kind_created_at", "kind", "created_at"),
        Index("ix_sessions_expires_at", "expires_at"),
        Index("ix_sessions_kind_last_seen_at", "kind", "last_seen_at"),  # purge of idle sessions
        Index("ix_sessions_created_at_id", "created_at", "id"),  # admin UI: newest first, keyset pages
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the cookie value; the value itself is never stored.
    id_digest: Mapped[str] = mapped_column(String(64), unique=True)
    # Public session id: the OIDC `sid` claim; not a credential.
    sid: Mapped[str] = mapped_column(String(43), unique=True)
    kind: Mapped[str] = mapped_column(String(10))  # a SessionKind value
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_version: Mapped[int | None]
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    auth_time: Mapped[datetime | None]
    expires_at: Mapped[datetime]  # absolute end; idle end is last_seen_at + idle TTL
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
