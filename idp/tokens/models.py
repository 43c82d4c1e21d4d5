"""Refresh-token families, refresh tokens and the access-token denylist."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.db import db


class RefreshFamily(db.Model):
    """All refresh tokens descending from one grant; revoking it kills every member (RFC 9700 4.14.2)."""

    __tablename__ = "refresh_families"
    __table_args__ = (
        Index("ix_refresh_families_user_id", "user_id"),
        Index("ix_refresh_families_sid", "sid"),
        Index("ix_refresh_families_expires_at", "expires_at"),
        Index("ix_refresh_families_client_id_sid", "client_id", "sid"),  # admin UI: sessions of a client
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    sid: Mapped[str | None] = mapped_column(String(43))  # bound SSO session, if any
    scope: Mapped[str] = mapped_column(Text, default="")
    token_version: Mapped[int] = mapped_column(default=1)
    auth_time: Mapped[datetime | None]
    # How the user signed in for the grant, repeated in every refreshed ID token (OIDC Core 12.2).
    acr: Mapped[str | None] = mapped_column(String(64))
    amr: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    offline: Mapped[bool] = mapped_column(default=False)  # granted offline_access: survives logout
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]  # absolute family lifetime
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(40))


class RefreshToken(db.Model):
    """One member of a family, stored as a digest; `rotated_at` is set once, atomically, on use."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_family_id", "family_id"),
        Index("ix_refresh_tokens_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("refresh_families.id", ondelete="CASCADE"))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]  # idle expiry
    rotated_at: Mapped[datetime | None]
    # The token this one's rotation issued (idp/tokens/refresh.py, grace window). A plain column, no
    # foreign key: purge deletes expired tokens in bulk, and a dangling id only means "gone".
    successor_id: Mapped[int | None]
    # The access token issued in the same response: revoking the family denies it (RFC 7009 2.1).
    access_jti: Mapped[str | None] = mapped_column(String(64))
    access_expires_at: Mapped[datetime | None]


class RevokedAccessToken(db.Model):
    """A revoked access token's jti, refused until the token would have expired anyway."""

    __tablename__ = "revoked_access_tokens"
    __table_args__ = (Index("ix_revoked_access_tokens_expires_at", "expires_at"),)

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime] = mapped_column(default=utcnow)
