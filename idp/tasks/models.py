"""The OutboxMessage model: work that must follow a commit, written in the same transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.db import db


class OutboxMessage(db.Model):
    """One message for a worker (a back-channel logout delivery), kept until it was handled."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        # The relay's only question: which undone messages are due? A small partial index answers it.
        Index("ix_outbox_messages_pending_due_at", "due_at", postgresql_where=text("done_at IS NULL"), sqlite_where=text("done_at IS NULL")),
        Index("ix_outbox_messages_done_at", "done_at"),  # the purge of handled messages
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))  # the handler's name (idp/tasks/outbox.py)
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime]  # when the relay publishes it (again) if it is still not done
    claimed_until: Mapped[datetime | None]  # a delivery attempt is running until then
    attempts: Mapped[int] = mapped_column(default=0)
    done_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(20))  # delivered | failed (gave up)
    last_error: Mapped[str | None] = mapped_column(Text)
