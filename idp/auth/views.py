"""The sign-in and consent pages of the authorization flow (server-rendered, CSRF-protected)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, redirect, render_template, request
from sqlalchemy.exc import IntegrityError

from idp.audit.actors import Actor
from idp.audit.service import record
from idp.db import db, durable
from idp.auth.forms import ConsentForm, LoginForm
from idp.auth.service import attempt_sign_in
from idp.auth.throttle import retry_after_header, wait_text
from idp.clients.models import Client
from idp.clients.service import deleted_elsewhere, get_client
from idp.errors import render_error_page
from idp.mfa import flow as mfa_flow
from idp.oauth import pending
from idp.oauth.consents import grant_consent
from idp.oauth.grants import Principal
from idp.scopes import describe
from idp.oauth.views import AUTHORIZE_PATH, client_gone_page, signed_in_principal
from idp.onboarding.service import must_verify_before_sign_in
from idp.sessions.service import start_session
from idp.web import headers
from idp.web.redirects import safe_next

bp = Blueprint("auth", __name__, template_folder="templates")

GENERIC_FAILURE = "Incorrect email or password."
THROTTLED = "Too many failed sign-ins. Try again in {wait}."
UNVERIFIED = "Confirm your email address first: open the link we mailed you. (Signing up again sends a new one.)"


# No framing (RFC 6749 10.13: a framed Allow button invites clickjacking) and no caching of forms.
headers.protect(bp, headers.USER_PAGES)


def _pending_client(entry: dict | None) -> Client | None:
    return get_client(pending.parameters(entry).get("client_id", "")) if entry else None


def login_form() -> LoginForm:
    """The sign-in form, bound to the waiting request (`rid`) and where to go after (`next`)."""
    return LoginForm(rid=request.args.get("rid", ""), next=request.args.get("next", ""))


def render_login(form: LoginForm, entry: dict | None, status: int = 200, message: str | None = None, retry_after: int = 0):
    form.password.data = None
    page = render_template("auth/login.html", form=form, client=_pending_client(entry), message=message)
    return page, status, retry_after_header(retry_after)


@bp.get("/login")
def login_page():
    """The sign-in form, naming the application that asks when a request is waiting."""
    form = login_form()
    entry = pending.get(form.rid.data)
    if entry:
        form.username.data = pending.parameters(entry).get("login_hint", "")[:320]
    return render_login(form, entry)


@bp.post("/login")
def login():
    """Sign in with email and password, then continue the waiting authorization request."""
    form = login_form()
    entry = pending.get(form.rid.data)
    if not form.validate_on_submit():
        return render_login(form, entry, 400, "Enter your email and password.")
    attempt = attempt_sign_in(form.username.data, form.password.data, ip=request.remote_addr)
    if attempt.user is None:
        if attempt.throttled:
            return render_login(form, entry, 429, THROTTLED.format(wait=wait_text(attempt.retry_after)), attempt.retry_after)
        return render_login(form, entry, 401, GENERIC_FAILURE)
    if must_verify_before_sign_in(attempt.user):
        # Not signed in after all: this drops only the success's audit event (what the check had to
        # keep, a rehashed password, was committed by throttled_check before the throttle wrote).
        db.session.rollback()
        with durable("a refused sign-in of an unverified account, audited"):  # the 403 rolls back the rest
            record("user.sign_in_refused", actor=Actor.user(attempt.user.id), target=f"user:{attempt.user.id}", ip=request.remote_addr, reason="email_unverified")
        return render_login(form, entry, 403, UNVERIFIED)
    second_step = mfa_flow.after_password(attempt.user, rid=form.rid.data, next_path=form.next.data)
    if second_step is not None:
        return second_step
    row = start_session(attempt.user, data=pending.carried())
    return continue_after_sign_in(row, attempt.user, rid=form.rid.data, next_path=form.next.data)


def continue_after_sign_in(row, user, *, rid: str, next_path: str):
    """Go where the user was going: the waiting authorization request, a local `next`, or a notice."""
    entry = pending.get(rid)
    if entry:
        pending.note(rid, login_sid=row.sid)
        return redirect(pending.resume_url(entry, AUTHORIZE_PATH))
    local = safe_next(next_path)  # only a path on this server may follow a sign-in
    if local:
        return redirect(local)
    return render_template("auth/signed_in.html", user=user)


@dataclass(frozen=True)
class ConsentRequest:
    """A pending authorization request waiting for the signed-in user's Allow or Deny."""

    form: ConsentForm
    entry: dict
    principal: Principal
    client: Client
    scope: str

    def render(self, status: int = 200):
        scopes = [(name, describe(name)) for name in self.scope.split()]
        return render_template("auth/consent.html", form=self.form, client=self.client, user=self.principal.user, scopes=scopes), status


def consent_request() -> ConsentRequest | None:
    """The request named by `rid`, if it is still waiting in this signed-in browser."""
    form = ConsentForm(rid=request.args.get("rid", ""))
    entry = pending.get(form.rid.data)
    principal = signed_in_principal()
    client = _pending_client(entry)
    if entry is None or principal is None or client is None:
        return None
    return ConsentRequest(form, entry, principal, client, client.get_allowed_scope(pending.parameters(entry).get("scope", "")))


def expired_request():
    return render_error_page(400, "Sign-in request expired", "This sign-in request is no longer waiting. Start again from the application.",
                             details="HTTP 400: the sign-in request (rid) is unknown or expired")


@bp.get("/consent")
def consent_page():
    """Ask the signed-in user to allow or deny the client the requested scopes."""
    asked = consent_request()
    return asked.render() if asked else expired_request()


@bp.post("/consent")
def consent():
    """Record the user's Allow or Deny, then continue the waiting authorization request."""
    asked = consent_request()
    if asked is None:
        return expired_request()
    if not asked.form.validate_on_submit():
        return asked.render(400)
    user, client, decision = asked.principal.user, asked.client, asked.form.decision.data
    if decision == "allow":
        client_id = client.client_id  # read now: a rollback below expires the row
        try:
            grant_consent(user, client, asked.scope)
        except IntegrityError:
            # The consent's row refers to a client another replica deleted (still cached here).
            db.session.rollback()
            if not deleted_elsewhere(client_id):
                raise
            return client_gone_page()
    else:
        record("consent.denied", actor=Actor.user(user.id), target=f"client:{client.client_id}", scope=asked.scope)
    pending.note(asked.form.rid.data, consent=decision, consent_sid=asked.principal.sid)
    return redirect(pending.resume_url(asked.entry, AUTHORIZE_PATH))
