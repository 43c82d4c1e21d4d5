"""The JobRun model."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.db import db


class JobRun(db.Model):
    """One run of a background job (rotation, purge, ...), recorded from start to end."""

    __tablename__ = "job_runs"
    __table_args__ = (
        Index("ix_job_runs_job_started_at", "job", "started_at"),
        # The relay asks every few seconds which jobs have a run in progress: a tiny partial index.
        Index("ix_job_runs_running_job", "job", postgresql_where=text("outcome = 'running'"), sqlite_where=text("outcome = 'running'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(20), default="running")  # running|succeeded|failed|skipped
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
