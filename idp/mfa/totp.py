"""Authenticator apps (TOTP, RFC 6238): enrolment, codes checked once each within one step of drift."""

from __future__ import annotations

from datetime import datetime

import pyotp
import segno
from flask import current_app
from sqlalchemy import or_, select, update

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.clock import utcnow
from idp.db import db
from idp.errors import ValidationError
from idp.mfa.models import TotpFactor
from idp.security import constant_time_equals
from idp.users.models import User

ISSUER_NAME = "idp"
DRIFT_STEPS = 1  # RFC 6238 5.2: accept the previous and the next time step too


def _encryptor():
    return current_app.extensions["idp.key_encryptor"]


def secret_of(factor: TotpFactor) -> str:
    """The factor's base32 key, decrypted."""
    return _encryptor().decrypt(factor.secret_encrypted).decode()


def confirmed_factor(user_id: int) -> TotpFactor | None:
    """The user's authenticator app, once enrolment completed."""
    return db.session.scalar(select(TotpFactor).where(TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None)))


def pending_factor(user_id: int) -> TotpFactor | None:
    """An enrolment started but not yet confirmed with a code."""
    return db.session.scalar(select(TotpFactor).where(TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_(None)))


def begin_enrolment(user: User) -> TotpFactor | None:
    """Start (or restart) enrolment with a fresh key; a confirmed app stays until this one is confirmed."""
    stale = pending_factor(user.id)
    if stale is not None:
        db.session.delete(stale)
        db.session.flush()
    if confirmed_factor(user.id) is not None:
        # One app per user (the unique user_id): replacing one means removing it first.
        return None
    factor = TotpFactor(user_id=user.id, secret_encrypted=_encryptor().encrypt(pyotp.random_base32(32).encode()))
    db.session.add(factor)
    db.session.flush()
    return factor


def provisioning_uri(user: User, factor: TotpFactor) -> str:
    """The otpauth:// URI an authenticator app imports (Key Uri Format)."""
    issuer = current_app.config["ISSUER"].split("://", 1)[-1]
    return pyotp.TOTP(secret_of(factor)).provisioning_uri(name=user.email, issuer_name=f"{ISSUER_NAME} {issuer}")


def qr_svg(uri: str) -> str:
    """The URI as a QR code, an inline SVG element."""
    return segno.make(uri, error="m").svg_inline(scale=4, title="QR code of the authenticator key")


def matching_step(factor: TotpFactor, code: str, *, now: datetime | None = None) -> int | None:
    """The time step `code` belongs to, within one step of drift, or None."""
    code = (code or "").strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret_of(factor))
    current = totp.timecode(now or utcnow())
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if constant_time_equals(totp.generate_otp(step), code):
            found = step
    return found


def spend_code(factor: TotpFactor, code: str, *, now: datetime | None = None) -> bool:
    """Accept `code` once: one conditional UPDATE moves last_step forward, so a replay (even a
    concurrent one) of this or an earlier step fails (RFC 6238 5.2)."""
    step = matching_step(factor, code, now=now)
    if step is None:
        return False
    moved = db.session.execute(
        update(TotpFactor)
        .where(TotpFactor.id == factor.id, or_(TotpFactor.last_step.is_(None), TotpFactor.last_step < step))
        .values(last_step=step, last_used_at=now or utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    return moved == 1


def confirm_enrolment(user: User, factor: TotpFactor, code: str) -> bool:
    """Complete enrolment with a correct code (which is then spent); audited."""
    if not spend_code(factor, code):
        return False
    db.session.execute(update(TotpFactor).where(TotpFactor.id == factor.id).values(confirmed_at=utcnow()).execution_options(synchronize_session=False))
    record("mfa.totp_enrolled", actor=Actor.user(user.id), target=f"user:{user.id}")
    return True


def remove(user: User, *, actor: str) -> bool:
    """Remove the user's authenticator app (confirmed or not); audited."""
    factors = list(db.session.scalars(select(TotpFactor).where(TotpFactor.user_id == user.id)))
    for factor in factors:
        db.session.delete(factor)
    if factors:
        record("mfa.totp_removed", actor=actor, target=f"user:{user.id}")
    return bool(factors)


def rewrap_secrets(*, actor: str) -> int:
    """Re-encrypt every authenticator-app key under the newest key-encryption key.

    Raises ValidationError, before anything changes, when no listed key decrypts one of them.
    """
    rows = list(db.session.scalars(select(TotpFactor).order_by(TotpFactor.id).with_for_update()))
    try:
        # Every key is rewrapped before any row changes, so a refusal leaves the caller's
        # transaction as it was (what the caller did before stays; the caller decides its fate).
        rewrapped = [_encryptor().rewrap(row.secret_encrypted) for row in rows]
    except ValueError:
        raise ValidationError("no configured key-encryption key decrypts an authenticator-app key; put the old key back and run rewrap again") from None
    for row, secret in zip(rows, rewrapped):
        row.secret_encrypted = secret
    record("mfa.totp_rewrapped", actor=actor, count=len(rows))
    return len(rows)
