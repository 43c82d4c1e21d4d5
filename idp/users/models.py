"""The User model."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.db import db


class User(db.Model):
    """An account that can sign in; `subject` is the stable, opaque OIDC `sub`."""

    __tablename__ = "users"
    __table_args__ = (
        # Email prefix search in the admin UI: LIKE 'prefix%' uses this index on PostgreSQL whatever
        # the database collation (the unique index serves it only under the C collation).
        Index("ix_users_email_pattern", "email", postgresql_ops={"email": "text_pattern_ops"}),
        # The admin UI's "Admins" filter: a few rows among all users, in email order. Without this
        # small partial index a page of admins means walking every user's email.
        Index("ix_users_admin_email", "email", postgresql_where=text("is_admin"), sqlite_where=text("is_admin")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), unique=True, default=lambda: uuid.uuid4().hex)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    # Bumped on password change, sign-out-everywhere, disable and admin-rights change: every
    # token, refresh family and session carrying an older value is refused (no ghost sessions).
    token_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    disabled_at: Mapped[datetime | None]
    # Set when the owner proved they read mail at `email` (a verification, invitation or reset link).
    email_verified_at: Mapped[datetime | None]
    # A new address the user asked for; it replaces `email` only once a link sent to it is opened.
    pending_email: Mapped[str | None] = mapped_column(String(320))
    # How the account came to be: "signup" or "invite" (None: an admin or the CLI created it with a password).
    created_via: Mapped[str | None] = mapped_column(String(16))

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"
