"""Who must use a second factor, and what a sign-in's methods are worth: `amr` (RFC 8176) and `acr`.

acr values, weakest first (documented in the README):
  "0"  an SSO session signed in with a password only, reused (OIDC Core 2: a long-lived cookie)
  "1"  a password, entered for this request
  "2"  two factors: a password and an authenticator-app or recovery code
  "3"  phishing-resistant: a passkey (with user verification), alone or after a password
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from idp.audit.service import record
from idp.db import db
from idp.mfa.models import ClientMfaRequirement, MfaRequirement, Passkey, TotpFactor

ACR_VALUES = ("0", "1", "2", "3")
POLICIES = ("optional", "required")
# RFC 8176 2: pwd (password), otp (one-time code), hwk/swk (proof of a hardware/software-held key),
# user (user presence and verification), mfa (more than one factor).
PASSWORD, OTP, HARDWARE_KEY, SOFTWARE_KEY, USER_VERIFIED, MULTI_FACTOR = "pwd", "otp", "hwk", "swk", "user", "mfa"
SECOND_FACTOR_ONLY = "two_factor"


def combine(*methods: str) -> tuple[str, ...]:
    """The amr of a sign-in made with these methods, `mfa` added when a password had a second factor."""
    amr = tuple(dict.fromkeys(methods))
    if PASSWORD in amr and len(amr) > 1:
        amr += (MULTI_FACTOR,)
    return amr


def level(amr: tuple[str, ...] | list[str]) -> int:
    """The assurance level (1, 2 or 3) a sign-in with these methods reached."""
    if HARDWARE_KEY in amr or SOFTWARE_KEY in amr:
        return 3
    return 2 if MULTI_FACTOR in amr else 1


def acr_for(amr: tuple[str, ...] | list[str], *, fresh: bool) -> str:
    """The `acr` of a grant: "0" for a reused password-only session, else the level reached."""
    reached = level(amr)
    return "0" if reached == 1 and not fresh else str(reached)


def requested_level(acr_values: str | None) -> int | None:
    """The weakest level the request's `acr_values` accepts (OIDC Core 3.1.2.1), None when none is known."""
    known = [int(value) for value in (acr_values or "").split() if value in ACR_VALUES]
    return max(1, min(known)) if known else None


def has_second_factor(user_id: int) -> bool:
    """True when the user has a confirmed authenticator app or a passkey."""
    totp = select(TotpFactor.id).where(TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None)).exists()
    passkey = select(Passkey.id).where(Passkey.user_id == user_id).exists()
    return bool(db.session.scalar(select(totp | passkey)))


def user_requires_mfa(user_id: int) -> bool:
    """True when the global policy or an admin requires this user to use a second factor."""
    if current_app.config["MFA_POLICY"] == "required":
        return True
    return db.session.get(MfaRequirement, user_id) is not None


def client_requires_mfa(client_pk: int) -> bool:
    """True when this client requires its users to sign in with two factors."""
    return db.session.get(ClientMfaRequirement, client_pk) is not None


def set_user_requirement(user_id: int, required: bool, *, actor: str) -> None:
    """An admin requires (or stops requiring) a second factor of one user; audited."""
    row = db.session.get(MfaRequirement, user_id)
    if required and row is None:
        db.session.add(MfaRequirement(user_id=user_id, created_by=actor[:64]))
    elif not required and row is not None:
        db.session.delete(row)
    else:
        return
    record("mfa.user_requirement_set", actor=actor, target=f"user:{user_id}", required=required)


def set_client_requirement(client_pk: int, client_id: str, required: bool, *, actor: str) -> None:
    """A client requires (or stops requiring) two factors of its users; audited."""
    row = db.session.get(ClientMfaRequirement, client_pk)
    if required and row is None:
        db.session.add(ClientMfaRequirement(client_id=client_pk))
    elif not required and row is not None:
        db.session.delete(row)
    else:
        return
    record("mfa.client_requirement_set", actor=actor, target=f"client:{client_id}", required=required)
