"""The sign-in and consent pages of the authorization flow (server-rendered, CSRF-protected)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request

from idp.audit.service import record
from idp.auth.forms import ConsentForm, LoginForm
from idp.auth.service import attempt_sign_in
from idp.clients.models import Client
from idp.clients.service import get_client
from idp.db import db
from idp.errors import render_error_page
from idp.mfa import flow as mfa_flow
from idp.oauth import pending
from idp.oauth.consents import grant_consent
from idp.oauth.views import AUTHORIZE_PATH, signed_in_principal
from idp.sessions.service import start_session

bp = Blueprint("auth", __name__, template_folder="templates")

GENERIC_FAILURE = "Incorrect email or password."
THROTTLED = "Too many failed sign-ins. Wait a few minutes and try again."
# The consent page names each scope in words.
SCOPE_DESCRIPTIONS = {
    "openid": "Sign you in with your account identifier",
    "profile": "See your name",
    "email": "See your email address and whether it is verified",
    "offline_access": "Keep access while you are away (stay signed in to the application)",
}


@bp.after_request
def protect_pages(response):
    """No framing (RFC 6749 10.13: a framed Allow button invites clickjacking) and no caching of forms."""
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    response.headers["Cache-Control"] = "no-store"
    return response


def is_local_path(target: str | None) -> bool:
    """Only a path on this server may follow a sign-in (no open redirect via `next`)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def _pending_client(entry: dict | None) -> Client | None:
    return get_client(pending.parameters(entry).get("client_id", "")) if entry else None


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with email and password, then continue the waiting authorization request."""
    form = LoginForm(rid=request.args.get("rid", ""), next=request.args.get("next", ""))
    entry = pending.get(form.rid.data)
    if request.method == "GET" and entry:
        form.username.data = pending.parameters(entry).get("login_hint", "")[:320]
    status, message = 200, None
    if form.validate_on_submit():
        attempt = attempt_sign_in(form.username.data, form.password.data, ip=request.remote_addr)
        if attempt.user is not None:
            second_step = mfa_flow.after_password(attempt.user, rid=form.rid.data, next_path=form.next.data)
            if second_step is not None:
                return second_step
            row = start_session(attempt.user, data=pending.carried())
            db.session.commit()
            return continue_after_sign_in(row, attempt.user, rid=form.rid.data, next_path=form.next.data)
        status, message = (429, THROTTLED) if attempt.throttled else (401, GENERIC_FAILURE)
    elif request.method == "POST":
        status, message = 400, "Enter your email and password."
    form.password.data = None
    return render_template("auth/login.html", form=form, client=_pending_client(entry), message=message), status


def continue_after_sign_in(row, user, *, rid: str, next_path: str):
    """Go where the user was going: the waiting authorization request, a local `next`, or a notice."""
    entry = pending.get(rid)
    if entry:
        pending.note(rid, login_sid=row.sid)
        return redirect(pending.resume_url(entry, AUTHORIZE_PATH))
    if is_local_path(next_path):
        return redirect(next_path)
    return render_template("auth/signed_in.html", user=user)


@bp.route("/consent", methods=["GET", "POST"])
def consent():
    """Ask the signed-in user to allow or deny the client the requested scopes."""
    form = ConsentForm(rid=request.args.get("rid", ""))
    entry = pending.get(form.rid.data)
    principal = signed_in_principal()
    client = _pending_client(entry)
    if entry is None or principal is None or client is None:
        return render_error_page(400, "Sign-in request expired", "This sign-in request is no longer waiting. Start again from the application.")
    scope = client.get_allowed_scope(pending.parameters(entry).get("scope", ""))
    if form.validate_on_submit():
        if form.decision.data == "allow":
            grant_consent(principal.user, client, scope)
        else:
            record("consent.denied", actor=f"user:{principal.user.id}", target=f"client:{client.client_id}", scope=scope)
            db.session.commit()
        pending.note(form.rid.data, consent=form.decision.data, consent_sid=principal.sid)
        return redirect(pending.resume_url(entry, AUTHORIZE_PATH))
    status = 400 if request.method == "POST" else 200
    scopes = [(name, SCOPE_DESCRIPTIONS.get(name, name)) for name in scope.split()]
    return render_template("auth/consent.html", form=form, client=client, user=principal.user, scopes=scopes), status
