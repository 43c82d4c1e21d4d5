"""Passkeys (WebAuthn Level 3) with py_webauthn: registration, assertion, counters and backup flags.

The relying party id and origin come from the issuer, never from the request's Host. Only
discoverable credentials with user verification are accepted, so a passkey alone is a sign-in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select, update
from webauthn import (
    generate_authentication_options, generate_registration_options, options_to_json, verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria, PublicKeyCredentialDescriptor, ResidentKeyRequirement, UserVerificationRequirement,
)

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.clock import utcnow
from idp.db import db, durable
from idp.mfa import policy
from idp.mfa.models import Passkey
from idp.users.models import User

RP_NAME = "idp"
MAX_NAME_LENGTH = 64


class PasskeyError(ValueError):
    """A WebAuthn response was refused; the message is shown to the user."""


@dataclass(frozen=True)
class Ceremony:
    """Options to hand to the browser (JSON) and the challenge they carry (kept server-side)."""

    options_json: str
    challenge: bytes


def relying_party() -> tuple[str, str]:
    """(RP id, origin) from the issuer (WebAuthn L3 5.1.3 / 7.1 step 9)."""
    parts = urlsplit(current_app.config["ISSUER"])
    return parts.hostname or "", f"{parts.scheme}://{parts.netloc}"


def user_passkeys(user_id: int) -> list[Passkey]:
    """A user's passkeys, oldest first."""
    return list(db.session.scalars(select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.created_at, Passkey.id)))


def _timeout_ms() -> int:
    return current_app.config["WEBAUTHN_CHALLENGE_TTL"] * 1000


def registration_options(user: User) -> Ceremony:
    """Options for navigator.credentials.create(): a discoverable credential, user verification required."""
    rp_id, _ = relying_party()
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_id=user.subject.encode(),  # the user handle: opaque, stable, no personal data
        user_name=user.email,
        user_display_name=user.name or user.email,
        timeout=_timeout_ms(),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED, user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=key.credential_id) for key in user_passkeys(user.id)],
    )
    return Ceremony(options_to_json(options), options.challenge)


def register(user: User, credential: str, challenge: bytes, name: str) -> Passkey:
    """Verify an attestation for `challenge` and store the credential; audited."""
    name = " ".join((name or "").split())[:MAX_NAME_LENGTH] or "Passkey"
    rp_id, origin = relying_party()
    try:
        verified = verify_registration_response(
            credential=_parsed(credential), expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        raise PasskeyError("The passkey could not be verified.") from error
    if db.session.scalar(select(Passkey.id).where(Passkey.credential_id == verified.credential_id)) is not None:
        raise PasskeyError("This passkey is already registered.")
    passkey = Passkey(
        user_id=user.id, credential_id=verified.credential_id, public_key=verified.credential_public_key,
        sign_count=verified.sign_count, aaguid=str(verified.aaguid), device_type=verified.credential_device_type.value,
        backed_up=verified.credential_backed_up, transports=_transports(credential), name=name,
    )
    db.session.add(passkey)
    db.session.flush()
    record("mfa.passkey_added", actor=Actor.user(user.id), target=f"user:{user.id}", passkey=passkey.id, name=name)
    return passkey


def authentication_options(user: User | None = None) -> Ceremony:
    """Options for navigator.credentials.get(): any discoverable passkey, or one of `user`'s."""
    rp_id, _ = relying_party()
    allowed = [PublicKeyCredentialDescriptor(id=key.credential_id) for key in user_passkeys(user.id)] if user else []
    options = generate_authentication_options(
        rp_id=rp_id, timeout=_timeout_ms(), allow_credentials=allowed, user_verification=UserVerificationRequirement.REQUIRED,
    )
    return Ceremony(options_to_json(options), options.challenge)


def authenticate(credential: str, challenge: bytes, *, user: User | None = None) -> tuple[Passkey, tuple[str, ...]]:
    """Verify an assertion for `challenge`; return the passkey and the amr it earns.

    A signature counter that did not move forward (from a non-zero one) means a cloned
    authenticator (WebAuthn L3 6.1.1): refused, and audited as such.
    """
    parsed = _parsed(credential)
    passkey = _find(parsed)
    if passkey is None or (user is not None and passkey.user_id != user.id):
        raise PasskeyError("This passkey is not registered here.")
    owner = db.session.get(User, passkey.user_id)
    handle = parsed.get("response", {}).get("userHandle")
    if owner is None or owner.is_disabled or (handle and _bytes(handle) != owner.subject.encode()):
        raise PasskeyError("This passkey is not registered here.")
    rp_id, origin = relying_party()
    try:
        verified = verify_authentication_response(
            credential=parsed, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin,
            credential_public_key=passkey.public_key, credential_current_sign_count=0,  # the counter is checked below
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as error:
        raise PasskeyError("The passkey's answer could not be verified.") from error
    if (verified.new_sign_count or passkey.sign_count) and verified.new_sign_count <= passkey.sign_count:
        with durable("a passkey clone warning, audited"):  # the refusal rolls back the rest
            record("mfa.passkey_clone_warning", actor=Actor.user(owner.id), target=f"user:{owner.id}", passkey=passkey.id,
                   stored=passkey.sign_count, presented=verified.new_sign_count)
        raise PasskeyError("This passkey's signature counter went backwards; it may have been copied. Use another factor.")
    # Compare-and-set: two racing uses of one counter value cannot both succeed.
    moved = db.session.execute(
        update(Passkey).where(Passkey.id == passkey.id, Passkey.sign_count == passkey.sign_count)
        .values(sign_count=verified.new_sign_count, last_used_at=utcnow(), backed_up=verified.credential_backed_up,
                device_type=verified.credential_device_type.value)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        raise PasskeyError("This passkey was used twice at once. Try again.")
    db.session.refresh(passkey)
    return passkey, amr_of(passkey)


def amr_of(passkey: Passkey) -> tuple[str, ...]:
    """RFC 8176: `swk` for a synced (multi-device) passkey, `hwk` for a device-bound one; `user` for verification."""
    kind = policy.SOFTWARE_KEY if passkey.device_type == "multi_device" else policy.HARDWARE_KEY
    return kind, policy.USER_VERIFIED


def remove(user: User, passkey_id: int, *, actor: str) -> bool:
    """Remove one of the user's passkeys; audited."""
    passkey = db.session.scalar(select(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == user.id))
    if passkey is None:
        return False
    db.session.delete(passkey)
    record("mfa.passkey_removed", actor=actor, target=f"user:{user.id}", passkey=passkey_id, name=passkey.name)
    return True


def _parsed(credential: str) -> dict:
    try:
        parsed = json.loads(credential or "")
    except ValueError:
        raise PasskeyError("The browser's answer was malformed.") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("response"), dict):
        raise PasskeyError("The browser's answer was malformed.")
    return parsed


def _bytes(value) -> bytes | None:
    try:
        return base64url_to_bytes(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _find(parsed: dict) -> Passkey | None:
    raw = _bytes(parsed.get("rawId") or parsed.get("id"))
    return db.session.scalar(select(Passkey).where(Passkey.credential_id == raw)) if raw else None


def _transports(credential: str) -> list[str]:
    transports = _parsed(credential)["response"].get("transports")
    return [str(item)[:16] for item in transports[:8]] if isinstance(transports, list) else []
