"""The OneTimeLink model: a single-use link sent by mail (password reset, email verification, invitation)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.db import db


class OneTimeLink(db.Model):
    """One link: its token exists only in the mail; the row keeps the token's SHA-256."""

    __tablename__ = "one_time_links"
    __table_args__ = (
        # "Invalidated by a newer link": the user's open links of one kind are found by this index.
        Index("ix_one_time_links_user_id_kind", "user_id", "kind"),
        Index("ix_one_time_links_expires_at", "expires_at"),  # the purge
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # reset | verify | invite
    # Minted by the worker that sends the mail (idp/onboarding/service.py), so no raw token is ever
    # written anywhere, the outbox included; NULL until then.
    digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))  # the address the link was sent to (and proves)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]  # spent, or replaced by a newer link of the same kind
