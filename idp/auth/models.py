"""The LoginThrottle model: one counter per throttle bucket (an account, an IP, or both)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import db


class LoginThrottle(db.Model):
    """Failed password checks of one bucket and its back-off.

    Times are Unix seconds (integers), not timestamps: the one UPDATE that counts a failure and
    computes the next back-off (idp/auth/throttle.py) needs plain arithmetic on both backends.
    """

    __tablename__ = "login_throttles"
    __table_args__ = (Index("ix_login_throttles_last_failure_at", "last_failure_at"),)

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "account", "ip" or "account_ip"
    account: Mapped[str | None] = mapped_column(String(64))  # `user:42` or `email:<digest>`
    ip: Mapped[str | None] = mapped_column(String(64))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    backoff: Mapped[int] = mapped_column(Integer, default=0)  # seconds of the current back-off
    blocked_until: Mapped[int] = mapped_column(BigInteger, default=0)
    last_failure_at: Mapped[int] = mapped_column(BigInteger, default=0)
    last_success_at: Mapped[int] = mapped_column(BigInteger, default=0)  # account_ip: a known address
