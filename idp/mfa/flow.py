"""The second step of a sign-in: a correct password waits in the session for its second factor.

The waiting state lives in the (still anonymous) server-side session, never in the cookie; the
sign-in itself starts only once every factor the policy asks for was given, under a new session
id carrying the sign-in's `amr`.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from flask import current_app, redirect, session, url_for

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.auth.service import SIGN_IN_FAILED, Checked, throttled_check
from idp.clients.service import get_client
from idp.db import db, durable
from idp.mfa import policy
from idp.oauth import pending
from idp.sessions.service import start_session
from idp.users.models import User

WAITING_KEY = "mfa_waiting"
AMR_KEY = "amr"  # the session's sign-in methods (RFC 8176), read by /authorize
T = TypeVar("T")


def throttle_key(user_id: int) -> str:
    """Second-factor guesses are counted apart from passwords: a known password must not reset them."""
    return f"mfa:user:{user_id}"


def client_of(rid: str | None):
    """The client of the authorization request waiting for this sign-in, if any."""
    entry = pending.get(rid)
    return get_client(pending.parameters(entry).get("client_id", "")) if entry else None


def after_password(user: User, *, rid: str, next_path: str):
    """The password was right: ask for the second factor or have one enrolled (a redirect), or None to sign in now."""
    client = client_of(rid)
    required = policy.user_requires_mfa(user.id) or (client is not None and policy.client_requires_mfa(client.id))
    if policy.has_second_factor(user.id):
        return _wait(user, rid, next_path, enrol=False)
    if required:
        return _wait(user, rid, next_path, enrol=True)
    return None


def _wait(user: User, rid: str, next_path: str, *, enrol: bool):
    session[WAITING_KEY] = {"user": user.id, "tv": user.token_version, "at": time.time(), "rid": rid, "next": next_path, "enrol": enrol}
    return redirect(url_for("mfa.enrol_at_sign_in" if enrol else "mfa.second_factor_page"))


def waiting_user(*, enrol: bool = False) -> User | None:
    """The user whose password was accepted in this session and who still owes a second factor."""
    waiting = session.get(WAITING_KEY)
    if not isinstance(waiting, dict) or bool(waiting.get("enrol")) != enrol:
        return None
    if time.time() - waiting.get("at", 0) > current_app.config["MFA_PENDING_TTL"]:
        return None
    user = db.session.get(User, waiting.get("user"))
    if user is None or user.is_disabled or user.token_version != waiting.get("tv"):
        return None
    return user


def waiting_target() -> tuple[str, str]:
    """(rid, next) of the waiting sign-in."""
    waiting = session.get(WAITING_KEY) or {}
    return waiting.get("rid", ""), waiting.get("next", "")


def checked_guess(user: User, ip: str | None, spend: Callable[[], T | None]) -> Checked[T]:
    """Run `spend` (truthy when the code was right) behind the throttle, backed off like a password.

    Guesses are reserved atomically before they are checked (idp/auth/throttle.py), so parallel
    guesses cannot outrun the limit. A right code is committed as spent before the throttle gives
    its reservation back on a connection of its own (SQLite allows one writer at a time).
    """

    return throttled_check(throttle_key(user.id), ip, spend, form="second_factor", actor=Actor.user(user.id))


def record_failed_guess(user: User, ip: str | None, factor: str, reason: str) -> None:
    """Count a wrong, reused or expired code against the throttle; its audit event is kept (`durable`)."""
    db.session.rollback()  # nothing of the failed attempt is kept but its audit event
    with durable("a failed second-factor guess, audited"):
        record(SIGN_IN_FAILED, actor=Actor.user(user.id), target=throttle_key(user.id), ip=ip, factor=factor, reason=reason)


def start_signed_in_session(user: User, amr: tuple[str, ...]):
    """Start the SSO session of a complete sign-in, remembering its methods."""
    amr = policy.combine(*amr)
    row = start_session(user, data={**pending.carried(), AMR_KEY: list(amr)})
    if amr != (policy.PASSWORD,):
        record("mfa.signed_in", actor=Actor.user(user.id), target=f"session:{row.sid}", amr=list(amr))
    return row


def session_amr() -> tuple[str, ...]:
    """The sign-in methods of this browser's SSO session (a password when it predates this feature)."""
    amr = session.get(AMR_KEY)
    return tuple(amr) if isinstance(amr, list) and amr else (policy.PASSWORD,)
