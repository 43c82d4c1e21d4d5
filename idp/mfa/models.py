"""The models of strong authentication: an authenticator app, recovery codes, passkeys, policy flags."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.db import db


class TotpFactor(db.Model):
    """A user's authenticator app (RFC 6238); unconfirmed until a correct code was entered."""

    __tablename__ = "totp_factors"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    # The shared key, encrypted under the key-encryption keys: it must be read back to check codes.
    secret_encrypted: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    # The last accepted time step: a code of this step or an earlier one is a replay.
    last_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(db.Model):
    """One single-use recovery code, kept as its SHA-256 digest."""

    __tablename__ = "recovery_codes"
    __table_args__ = (Index("ix_recovery_codes_user_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None]


class Passkey(db.Model):
    """A WebAuthn credential registered by a user (a discoverable one: a passkey)."""

    __tablename__ = "passkeys"
    __table_args__ = (Index("ix_passkeys_user_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE key
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    aaguid: Mapped[str] = mapped_column(String(36), default="")
    # "single_device" or "multi_device" (synced), and whether it is backed up now (WebAuthn L3 6.1.3).
    device_type: Mapped[str] = mapped_column(String(16), default="single_device")
    backed_up: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class MfaRequirement(db.Model):
    """A user an admin requires a second factor of (a row means required)."""

    __tablename__ = "mfa_requirements"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))


class ClientMfaRequirement(db.Model):
    """A client that requires its users to sign in with a second factor (a row means required)."""

    __tablename__ = "client_mfa_requirements"

    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
