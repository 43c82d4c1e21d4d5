"""The second-factor pages: the sign-in's second step, enrolment, and the account's security page.

Every state change is a POST with a CSRF token; GET only shows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, session, url_for
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from idp.account.forms import ActionForm
from idp.account.views import login_required
from idp.audit.actors import Actor
from idp.audit.service import record
from idp.auth.forms import LoginForm
from idp.auth.service import Checked, attempt_sign_in
from idp.auth.throttle import retry_after_header, wait_text
from idp.auth.views import continue_after_sign_in
from idp.db import commit_now, db, durable
from idp.errors import render_error_page
from idp.mfa import flow, passkeys, policy, recovery, totp
from idp.mfa.forms import CodeForm, ConfirmForm, PasskeyForm
from idp.users.models import User
from idp.web import headers

bp = Blueprint("mfa", __name__, template_folder="templates", static_folder="static", static_url_path="/mfa/static")
headers.protect(bp, headers.USER_PAGES)

WRONG_CODE = "That code is wrong, expired or already used."
THROTTLED = "Too many wrong codes. Try again in {wait}."
EXPIRED = "Your sign-in took too long. Sign in again."


def _expired_page():
    return render_error_page(400, "Sign-in expired", EXPIRED, action=("Sign in again", url_for("auth.login")))


# --- the second step of a sign-in ---------------------------------------------------------------


@bp.get("/login/second-factor")
def second_factor_page():
    """Ask the user whose password was right for an authenticator code or a recovery code."""
    user = flow.waiting_user()
    if user is None:
        return _expired_page()
    return _second_factor_form(user, CodeForm())


@bp.post("/login/second-factor")
def second_factor():
    """Check the code; a right one completes the sign-in, a wrong one counts against the throttle."""
    user = flow.waiting_user()
    if user is None:
        return _expired_page()
    form = CodeForm()
    if not form.validate_on_submit():
        return _second_factor_form(user, form, "Enter the code from your authenticator app, or a recovery code.", 400)
    checked = _check_second_factor(user, form.code.data)
    if checked.retry_after:
        return _second_factor_form(user, form, THROTTLED.format(wait=wait_text(checked.retry_after)), 429, checked.retry_after)
    if checked.value is None:
        return _second_factor_form(user, form, WRONG_CODE, 401)
    return _signed_in_with(user, checked.value)


def _second_factor_form(user: User, form: CodeForm, message: str | None = None, status: int = 200, retry_after: int = 0):
    form.code.data = None
    page = render_template("mfa/second_factor.html", form=form, message=message, has_totp=totp.confirmed_factor(user.id) is not None,
                           has_passkey=bool(passkeys.user_passkeys(user.id)))
    return page, status, retry_after_header(retry_after)


def _signed_in_with(user: User, result: tuple):
    """Start the session; after a recovery code, say how many remain before going on."""
    rid, next_path = flow.waiting_target()
    row = flow.start_signed_in_session(user, (policy.PASSWORD, result[0]))
    onward = continue_after_sign_in(row, user, rid=rid, next_path=next_path)
    if len(result) == 1:
        return onward
    return render_template("mfa/recovery_used.html", remaining=result[1], onward=_location(onward))


def _location(onward) -> str:
    """Where an interstitial page's Continue leads: the sign-in's redirect, or the account (a rendered page has none)."""
    return onward.location if getattr(onward, "status_code", None) in (302, 303) else url_for("account.account")


def _check_second_factor(user: User, code: str) -> Checked[tuple]:
    """Spend an authenticator or recovery code behind the throttle.

    The value is (amr method,) or (amr method, recovery codes left) for a right code; a wrong,
    reused or expired one is audited and counted by the throttle."""
    ip = request.remote_addr
    factor = totp.confirmed_factor(user.id)
    digits = code.strip().replace(" ", "")
    if factor is not None and digits.isdigit():
        kind, spend = "totp", lambda: (policy.OTP,) if totp.spend_code(factor, digits) else None
    else:
        kind, spend = "recovery_code", lambda: _spend_recovery_code(user.id, code)
    checked = flow.checked_guess(user, ip, spend)
    if checked.value is None and not checked.retry_after:
        flow.record_failed_guess(user, ip, kind, "wrong, reused or expired" if kind == "totp" else "wrong or used")
    return checked


def _spend_recovery_code(user_id: int, code: str) -> tuple | None:
    left = recovery.spend(user_id, code)
    return None if left is None else (policy.OTP, left)


# --- enrolment right after the password, when a policy requires a factor the user lacks ------------


@bp.get("/login/enrol")
def enrol_at_sign_in():
    """Tell the user a second factor is required and offer to set one up."""
    user = flow.waiting_user(enrol=True)
    if user is None:
        return _expired_page()
    return render_template("mfa/enrol_required.html", form=ActionForm())


@bp.post("/login/enrol/setup")
def enrol_setup_at_sign_in():
    """Start authenticator-app enrolment for the waiting user."""
    user = flow.waiting_user(enrol=True)
    if user is None or not ActionForm().validate_on_submit():
        return _expired_page()
    return _setup(user, url_for("mfa.enrol_confirm_at_sign_in"))


@bp.post("/login/enrol/confirm")
def enrol_confirm_at_sign_in():
    """Confirm the app with a code, then sign in (password + app) and show the recovery codes once."""
    user = flow.waiting_user(enrol=True)
    if user is None:
        return _expired_page()
    factor = totp.pending_factor(user.id)
    form = CodeForm()
    if factor is None or not form.validate_on_submit() or not totp.confirm_enrolment(user, factor, form.code.data):
        db.session.rollback()  # the 400 would too; now, so the page is drawn from the stored factor
        return _setup_page(user, factor, url_for("mfa.enrol_confirm_at_sign_in"), WRONG_CODE, 400)
    codes = recovery.regenerate(user.id, actor=Actor.user(user.id))
    rid, next_path = flow.waiting_target()
    row = flow.start_signed_in_session(user, (policy.PASSWORD, policy.OTP))
    onward = continue_after_sign_in(row, user, rid=rid, next_path=next_path)
    return _codes_page(codes, _location(onward))


# --- the account's security page ------------------------------------------------------------------


@bp.get("/account/security")
@login_required
def security(user: User):
    """Show the user's second factors: authenticator app, recovery codes left, passkeys."""
    return _security_page(user)


def _security_page(user: User, message: str | None = None, status: int = 200, retry_after: int = 0):
    page = render_template(
        "mfa/security.html",
        user=user,
        factor=totp.confirmed_factor(user.id),
        recovery_left=recovery.remaining(user.id),
        passkeys=passkeys.user_passkeys(user.id),
        passkey_form=PasskeyForm(formdata=None),
        confirm_form=ConfirmForm(formdata=None),
        message=message,
    )
    return page, status, retry_after_header(retry_after)


@bp.post("/account/totp/setup")
@login_required
def totp_setup(user: User):
    """Start enrolment: a fresh key, shown as a QR code, as text and as an otpauth:// URI."""
    if not ActionForm().validate_on_submit():
        abort(400)
    if totp.confirmed_factor(user.id) is not None:
        return _security_page(user, "An authenticator app is already set up; remove it first.", 400)
    return _setup(user, url_for("mfa.totp_confirm"))


@bp.post("/account/totp/confirm")
@login_required
def totp_confirm(user: User):
    """Complete enrolment with a correct code; show ten recovery codes once."""
    factor = totp.pending_factor(user.id)
    form = CodeForm()
    if factor is None:
        return _security_page(user, "Start the setup again.", 400)
    if not form.validate_on_submit() or not totp.confirm_enrolment(user, factor, form.code.data):
        db.session.rollback()  # the 400 would too; now, so the page is drawn from the stored factor
        return _setup_page(user, factor, url_for("mfa.totp_confirm"), WRONG_CODE, 400)
    codes = recovery.regenerate(user.id, actor=Actor.user(user.id))
    return _codes_page(codes, url_for("mfa.security"))


def _setup(user: User, confirm_url: str):
    factor = totp.begin_enrolment(user)
    return _setup_page(user, factor, confirm_url, None, 200)


def _setup_page(user: User, factor, confirm_url: str, message: str | None, status: int):
    if factor is None:
        return _expired_page()
    uri = totp.provisioning_uri(user, factor)
    return render_template(
        "mfa/totp_setup.html", form=CodeForm(formdata=None), confirm_url=confirm_url, uri=uri, key=totp.secret_of(factor),
        qr=totp.qr_svg(uri), message=message,
    ), status


def _codes_page(codes: list[str], onward: str):
    return render_template("mfa/recovery_codes.html", codes=codes, onward=onward)


@dataclass(frozen=True)
class Refusal:
    """Why a factor change was refused: the message, its status, and how long to wait when throttled."""

    message: str
    status: int = 400
    retry_after: int = 0


def confirm_password(user: User) -> Refusal | None:
    """Check the re-entered password (throttled like a sign-in); why not, or None."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        return Refusal("Enter your password to confirm.")
    attempt = attempt_sign_in(user.email, form.password.data, ip=request.remote_addr)
    if attempt.throttled:
        return Refusal(f"Too many failed attempts. Try again in {wait_text(attempt.retry_after)}.", 429, attempt.retry_after)
    if attempt.user is None or attempt.user.id != user.id:
        return Refusal("Incorrect password.")
    return None


def _refused_change(user: User, refusal: Refusal):
    commit_now("a failed password re-entry's audit event")  # the refusal's status rolls back
    return _security_page(user, refusal.message, refusal.status, refusal.retry_after)


def removal_refused(user: User, *, removing_passkey_id: int | None = None, removing_totp: bool = False) -> Refusal | None:
    """Why removing this factor is refused (it is the last one and a policy requires one), or None."""
    if not policy.user_requires_mfa(user.id):
        return None
    has_totp = totp.confirmed_factor(user.id) is not None and not removing_totp
    if has_totp or any(key.id != removing_passkey_id for key in passkeys.user_passkeys(user.id)):
        return None
    return Refusal("A second factor is required for your account: add another one before removing this one.")


@bp.post("/account/totp/remove")
@login_required
def totp_remove(user: User):
    """Remove the authenticator app after the password was re-entered (and its recovery codes with it)."""
    refusal = confirm_password(user) or removal_refused(user, removing_totp=True)
    if refusal:
        return _refused_change(user, refusal)
    totp.remove(user, actor=Actor.user(user.id))
    if not policy.has_second_factor(user.id):
        recovery.remove_all(user.id)
    flash("The authenticator app is removed.")
    return redirect(url_for("mfa.security"))


@bp.post("/account/recovery-codes")
@login_required
def recovery_codes(user: User):
    """Replace the recovery codes with ten new ones after the password was re-entered."""
    refusal = confirm_password(user)
    if refusal is None and not policy.has_second_factor(user.id):
        refusal = Refusal("Set up an authenticator app or a passkey first.")
    if refusal:
        return _refused_change(user, refusal)
    codes = recovery.regenerate(user.id, actor=Actor.user(user.id))
    return _codes_page(codes, url_for("mfa.security"))


# --- passkeys -----------------------------------------------------------------------------------

CHALLENGES_KEY = "webauthn_challenges"
MAX_CHALLENGES = 4  # a conditional (autofill) request and a button press may each hold one


def _issue(purpose: str, ceremony: passkeys.Ceremony, user_id: int | None):
    """Keep the challenge server-side (single use, short-lived) and give the browser its options."""
    now = time.time()
    ttl = current_app.config["WEBAUTHN_CHALLENGE_TTL"]
    kept = [entry for entry in session.get(CHALLENGES_KEY) or [] if now - entry.get("at", 0) <= ttl][-(MAX_CHALLENGES - 1):]
    kept.append({"purpose": purpose, "challenge": bytes_to_base64url(ceremony.challenge), "at": now, "user": user_id})
    session[CHALLENGES_KEY] = kept
    return Response(ceremony.options_json, mimetype="application/json", headers=dict(headers.NO_STORE))


def _take(purpose: str, credential: str, user_id: int | None) -> bytes | None:
    """The challenge this response answers, removed so it can never be answered again; None if unknown or expired."""
    answered = _answered_challenge(credential)
    entries = list(session.get(CHALLENGES_KEY) or [])
    for entry in entries:
        if entry.get("challenge") == answered:
            entries.remove(entry)
            session[CHALLENGES_KEY] = entries
            fresh = time.time() - entry.get("at", 0) <= current_app.config["WEBAUTHN_CHALLENGE_TTL"]
            if fresh and entry.get("purpose") == purpose and entry.get("user") == user_id:
                return base64url_to_bytes(answered)
            return None
    return None


def _answered_challenge(credential: str) -> str | None:
    try:
        client_data = json.loads(base64url_to_bytes(json.loads(credential)["response"]["clientDataJSON"]))
        return str(client_data["challenge"])
    except (ValueError, KeyError, TypeError):
        return None


def _refused(user_id: int | None, purpose: str, error: passkeys.PasskeyError | str) -> str:
    """Audit a refused WebAuthn response (after dropping anything it half-wrote); the message to show."""
    message = str(error)
    db.session.rollback()
    with durable("a refused passkey answer, audited"):
        record("mfa.passkey_refused", actor=Actor.user(user_id) if user_id else Actor.ANONYMOUS, target=f"user:{user_id}" if user_id else None,
               ip=request.remote_addr, purpose=purpose, reason=message)
    return message


def _verify(purpose: str, form: PasskeyForm, user: User | None, verify):
    """Run `verify(credential, challenge)` for a submitted form; (result, None) or (None, message)."""
    user_id = user.id if user else None
    if not form.validate_on_submit():
        return None, _refused(user_id, purpose, "The browser sent no passkey answer.")
    if _answered_challenge(form.credential.data) is None:
        return None, _refused(user_id, purpose, "The browser's answer was malformed.")
    challenge = _take(purpose, form.credential.data, user_id)
    if challenge is None:
        return None, _refused(user_id, purpose, "This passkey request expired or was already used. Try again.")
    try:
        return verify(form.credential.data, challenge), None
    except passkeys.PasskeyError as error:
        return None, _refused(user_id, purpose, error)


@bp.post("/account/passkeys/options")
@login_required
def passkey_registration_options(user: User):
    """Creation options for "Add a passkey" (the CSRF token comes in the X-CSRFToken header)."""
    return _issue("register", passkeys.registration_options(user), user.id)


@bp.post("/account/passkeys")
@login_required
def passkey_add(user: User):
    """Store the new passkey once its attestation verified against this session's challenge."""
    form = PasskeyForm()
    added, error = _verify("register", form, user, lambda credential, challenge: passkeys.register(user, credential, challenge, form.name.data))
    if error:
        return _security_page(user, error, 400)
    flash(f"Passkey “{added.name}” added.")
    return redirect(url_for("mfa.security"))


@bp.post("/account/passkeys/<int:passkey_id>/remove")
@login_required
def passkey_remove(user: User, passkey_id: int):
    """Remove a passkey after the password was re-entered."""
    refusal = confirm_password(user) or removal_refused(user, removing_passkey_id=passkey_id)
    if refusal:
        return _refused_change(user, refusal)
    if not passkeys.remove(user, passkey_id, actor=Actor.user(user.id)):
        abort(404)
    if not policy.has_second_factor(user.id):
        recovery.remove_all(user.id)
    flash("The passkey is removed.")
    return redirect(url_for("mfa.security"))


@bp.post("/login/passkey/options")
def passkey_sign_in_options():
    """Request options for "Sign in with a passkey": any discoverable credential of this site."""
    return _issue("sign_in", passkeys.authentication_options(), None)


@bp.post("/login/passkey")
def passkey_sign_in():
    """Sign in with a passkey alone (user verification required), then continue the waiting request."""
    form = PasskeyForm()
    result, error = _verify("sign_in", form, None, lambda credential, challenge: passkeys.authenticate(credential, challenge))
    rid, next_path = request.form.get("rid", "")[:64], request.form.get("next", "")[:200]
    if error:
        return _login_page_with(error, rid, next_path)
    passkey, amr = result
    user = db.session.get(User, passkey.user_id)
    record("user.signed_in", actor=Actor.user(user.id), target=f"user:{user.id}", ip=request.remote_addr, method="passkey")
    row = flow.start_signed_in_session(user, amr)
    return continue_after_sign_in(row, user, rid=rid, next_path=next_path)


def _login_page_with(message: str, rid: str, next_path: str):
    form = LoginForm(formdata=None, rid=rid, next=next_path)
    return render_template("auth/login.html", form=form, client=flow.client_of(rid), message=message), 400


@bp.post("/login/second-factor/passkey/options")
def passkey_second_factor_options():
    """Request options for a passkey as the second factor: one of the waiting user's."""
    user = flow.waiting_user()
    if user is None:
        return _expired_page()
    return _issue("second_factor", passkeys.authentication_options(user), user.id)


@bp.post("/login/second-factor/passkey")
def passkey_second_factor():
    """A passkey after the password: the sign-in completes with both factors."""
    user = flow.waiting_user()
    if user is None:
        return _expired_page()
    result, error = _verify("second_factor", PasskeyForm(), user, lambda credential, challenge: passkeys.authenticate(credential, challenge, user=user))
    if error:
        return _second_factor_form(user, CodeForm(formdata=None), error, 400)
    _, amr = result
    rid, next_path = flow.waiting_target()
    row = flow.start_signed_in_session(user, (policy.PASSWORD, *amr))
    return continue_after_sign_in(row, user, rid=rid, next_path=next_path)
