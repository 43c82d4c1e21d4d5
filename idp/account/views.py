"""The account page (`/account`): a signed-in user's sessions, password and granted applications."""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from idp import grants
from idp.account import service
from idp.account.forms import ActionForm, PasswordForm
from idp.audit.actors import Actor
from idp.auth.throttle import retry_after_header, wait_text
from idp.db import db
from idp.errors import NotFoundError, ValidationError
from idp.sessions.service import current_session_row, start_session
from idp.signout import sign_out_everywhere
from idp.user_agents import describe as describe_device
from idp.users.models import User
from idp.users.service import validate_password
from idp.web import headers

bp = Blueprint("account", __name__, template_folder="templates")
headers.protect(bp, headers.USER_PAGES)  # the same anti-framing and no-store headers as the sign-in pages


def signed_in_user() -> User | None:
    """The user of this browser's SSO session, if it is signed in."""
    row = current_session_row()
    return db.session.get(User, row.user_id) if row is not None and row.user_id else None


def login_required(view):
    """Send anonymous visitors to the login page, to come back here afterwards."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        user = signed_in_user()
        if user is None:
            return redirect(url_for("auth.login", next=request.path))
        return view(user, *args, **kwargs)

    return wrapper


@bp.get("/account")
@login_required
def account(user: User):
    """Show the user's sessions, a change-password form and the applications they allowed."""
    return _render(user, PasswordForm())


def _render(user: User, password_form: PasswordForm, status: int = 200):
    current = current_session_row()
    return render_template(
        "account/account.html",
        user=user,
        sessions=service.sso_sessions(user.id),
        current_sid=current.sid if current else None,
        describe_device=describe_device,
        apps=grants.granted_apps(user.id),
        password_form=password_form,
        action_form=ActionForm(),
    ), status


@bp.post("/account/sessions/<sid>/sign-out")
@login_required
def sign_out_session(user: User, sid: str):
    """Sign out one session (this browser's or another device's)."""
    if not ActionForm().validate_on_submit():
        abort(400)
    current = current_session_row()
    try:
        service.end_own_session(user.id, sid)
    except NotFoundError:
        abort(404)
    if current is not None and current.sid == sid:
        return redirect(url_for("auth.login"))
    flash("That session is signed out.")
    return redirect(url_for("account.account"))


@bp.get("/account/sign-out-everywhere")
@login_required
def sign_out_all_page(user: User):
    """Ask before ending every session and token: the action is the POST below."""
    return render_template("account/confirm_sign_out_all.html", user=user, sessions=len(service.sso_sessions(user.id)), action_form=ActionForm())


@bp.post("/account/sign-out-everywhere")
@login_required
def sign_out_all(user: User):
    """End every session and token of the user, this browser's included."""
    if not ActionForm().validate_on_submit():
        abort(400)
    sign_out_everywhere(user, actor=Actor.user(user.id))
    return render_template("account/signed_out.html"), 200


@bp.post("/account/password")
@login_required
def password(user: User):
    """Change the password; every other session and token dies, this browser stays signed in."""
    form = PasswordForm()
    if not form.validate_on_submit():
        return _render(user, form, 400)
    try:
        validate_password(form.new_password.data)
        retry_after = service.change_own_password(user, form.current_password.data, form.new_password.data, ip=request.remote_addr)
    except ValidationError as error:
        field = form.current_password if error.field == "current_password" else form.new_password
        field.errors = [*field.errors, str(error)]
        return _render(user, form, 400)
    if retry_after:
        form.current_password.errors = [*form.current_password.errors, f"Too many wrong passwords. Try again in {wait_text(retry_after)}."]
        page, status = _render(user, form, 429)
        return page, status, retry_after_header(retry_after)
    # The bump ended every session, this one too; give this browser a fresh one (new id).
    start_session(user)
    flash("Password changed. Every other device is signed out.")
    return redirect(url_for("account.account"))


@bp.post("/account/applications/<client_id>/revoke")
@login_required
def revoke_application(user: User, client_id: str):
    """Withdraw an application's access (consent and refresh tokens)."""
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        grants.revoke_app(user.id, client_id)
    except NotFoundError:
        abort(404)
    flash("Access revoked.")
    return redirect(url_for("account.account"))
