"""Pages of the links sent by mail (reset, verify, invitation), forgot password, sign-up, email change.

A link's token arrives in the query string (never the path: access logs drop query strings). The
GET that brings it only checks it, remembers the link's id in this browser's server-side session
and redirects to the same path without the token (303), so the token leaves the address bar and
history at once and no later request can carry it in a Referer; the pages also send
`Referrer-Policy: no-referrer`. The form is then bound to that session: a copied form URL is
useless without the link. GET only shows; the POST (CSRF) acts, so a mail scanner that fetches
links changes nothing.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for

from idp.account.views import login_required
from idp.auth.throttle import retry_after_header, wait_text
from idp.db import db
from idp.errors import ValidationError
from idp.onboarding import service
from idp.onboarding.forms import ConfirmForm, EmailChangeForm, EmailForm, NewPasswordForm, SignupForm
from idp.onboarding.models import OneTimeLink
from idp.users.models import User
from idp.web import headers

bp = Blueprint("onboarding", __name__, template_folder="templates")
headers.protect(bp, headers.LINK_PAGES)
TOO_MANY = "Too many requests. Try again in {wait}."


@bp.app_context_processor
def sign_in_links() -> dict:
    """The sign-in page offers "Create an account" only when sign-up is open."""
    return {"signup_open": service.signup_open}


def _session_key(kind: str) -> str:
    return f"onboarding.link.{kind}"


def _stashed_link(kind: str) -> OneTimeLink | None:
    link_id = session.get(_session_key(kind))
    link = db.session.get(OneTimeLink, link_id) if isinstance(link_id, int) else None
    return link if link is not None and link.kind == kind and service.is_open(link) else None


def invalid_link(status: int = 400):
    """The one page for a wrong, tampered, expired, spent or replaced link: nothing was changed."""
    return render_template("onboarding/invalid_link.html"), status


def link_page(kind: str, render):
    """GET of a link page: take the token into the session and drop it from the URL, or show the form."""
    if "token" in request.args:
        link = service.find_link(request.args.get("token", ""), kind)
        if link is None:
            return invalid_link()
        session[_session_key(kind)] = link.id
        return redirect(request.path, 303)
    link = _stashed_link(kind)
    if link is None:
        return invalid_link()
    return render(link)


def _finish(kind: str, template: str, **context):
    session.pop(_session_key(kind), None)
    return render_template(template, **context)


def _password_errors(form: NewPasswordForm, error: ValidationError) -> None:
    form.password.errors = [*form.password.errors, str(error).capitalize() + "."]


def password_page(kind: str, template: str):
    """GET of a link that sets a password (reset, invitation): the new-password form."""
    return link_page(kind, lambda link: render_template(template, form=NewPasswordForm(), link=link))


def choose_password(kind: str, template: str, spend, **done):
    """POST of a link that sets a password: `spend(link, password, ip=...)` acts, then `done` is shown.

    A refused password shows the form again (400) and changes nothing; the link stays open.
    """
    link = _stashed_link(kind)
    if link is None:
        return invalid_link()
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            spend(link, form.password.data, ip=request.remote_addr)
        except ValidationError as error:
            db.session.rollback()  # the 400 would too; now, so the page shows the link as stored
            _password_errors(form, error)
        else:
            return _finish(kind, "onboarding/done.html", **done)
    return render_template(template, form=form, link=link), 400


# --- forgot and reset ---------------------------------------------------------------------------------


@bp.get("/password/forgot")
def forgot_password_page():
    """Ask for a reset link."""
    return render_template("onboarding/forgot.html", form=EmailForm())


@bp.post("/password/forgot")
def forgot_password():
    """Mail a reset link if the account exists; the answer is the same whether or not it does."""
    form = EmailForm()
    if not form.validate_on_submit():
        return render_template("onboarding/forgot.html", form=form, message="Enter your email address."), 400
    retry_after = service.request_reset(form.email.data, ip=request.remote_addr)
    if retry_after:
        page = render_template("onboarding/forgot.html", form=form, message=TOO_MANY.format(wait=wait_text(retry_after)))
        return page, 429, retry_after_header(retry_after)
    return render_template("onboarding/check_mail.html", email=form.email.data.strip(), purpose="reset")


@bp.get("/password/reset")
def reset_password_page():
    """Open a reset link, then show the new-password form."""
    return password_page(service.RESET, "onboarding/reset.html")


@bp.post("/password/reset")
def reset_password():
    """Set the new password: every session and token of the account ends."""
    return choose_password(service.RESET, "onboarding/reset.html", service.reset_password, title="Password changed",
                           message="Your new password is set, and every device signed in to your account has been signed out.")


# --- email verification -------------------------------------------------------------------------------


@bp.get("/email/verify")
def confirm_email_page():
    """Open a verification link, then ask for a click to confirm (a fetched link confirms nothing)."""
    return link_page(service.VERIFY, lambda link: render_template("onboarding/verify.html", form=ConfirmForm(), link=link))


@bp.post("/email/verify")
def confirm_email():
    """Mark the address verified; a pending new address replaces the old one."""
    link = _stashed_link(service.VERIFY)
    if link is None or not ConfirmForm().validate_on_submit():
        return invalid_link()
    try:
        user = service.confirm_email(link)
    except ValidationError as error:
        db.session.rollback()  # the 409 would too; the link is left as it was
        return render_template("onboarding/invalid_link.html", reason=str(error)), 409
    return _finish(service.VERIFY, "onboarding/done.html", title="Email address confirmed",
                   message=f"{user.email} is confirmed as the address of your account.")


# --- invitation ---------------------------------------------------------------------------------------


@bp.get("/invitation")
def accept_invitation_page():
    """Open an invitation link, then show the choose-a-password form."""
    return password_page(service.INVITE, "onboarding/invitation.html")


@bp.post("/invitation")
def accept_invitation():
    """Set the invited account's first password."""
    return choose_password(service.INVITE, "onboarding/invitation.html", service.accept_invitation, title="Welcome",
                           message="Your password is set. You can sign in now.")


# --- sign-up ------------------------------------------------------------------------------------------


@bp.get("/signup")
def sign_up_page():
    """The sign-up form (only when IDP_SIGNUP is not off)."""
    if not service.signup_open():
        abort(404)
    return render_template("onboarding/signup.html", form=SignupForm())


@bp.post("/signup")
def sign_up():
    """Create an account and mail a verification link; an existing address gets the same answer."""
    if not service.signup_open():
        abort(404)
    form = SignupForm()
    if form.validate_on_submit():
        try:
            retry_after = service.sign_up(form.email.data, form.password.data, name=form.name.data, ip=request.remote_addr)
        except ValidationError as error:
            db.session.rollback()  # the 400 would too (the throttle's count is on its own connection)
            field = form.email if error.field == "email" else form.password
            field.errors = [*field.errors, str(error).capitalize() + "."]
        else:
            if retry_after:
                form.email.errors = [TOO_MANY.format(wait=wait_text(retry_after))]
                return render_template("onboarding/signup.html", form=form), 429, retry_after_header(retry_after)
            return render_template("onboarding/check_mail.html", email=form.email.data.strip(), purpose="signup")
    form.password.data = form.confirm.data = None
    return render_template("onboarding/signup.html", form=form), 400


# --- email change (signed in) -------------------------------------------------------------------------


@bp.get("/account/email")
@login_required
def change_email_page(user: User):
    """The form to move the account to a new address."""
    return render_template("onboarding/change_email.html", form=EmailChangeForm(), user=user)


@bp.post("/account/email")
@login_required
def change_email(user: User):
    """Mail a verification link to the new address; it replaces the old one once confirmed."""
    form = EmailChangeForm()
    if form.validate_on_submit():
        try:
            retry_after = service.request_email_change(user, form.email.data, form.password.data, ip=request.remote_addr)
        except ValidationError as error:
            field = form.password if error.field == "password" else form.email
            field.errors = [*field.errors, str(error).capitalize() + "."]
        else:
            if retry_after:
                form.password.errors = [TOO_MANY.format(wait=wait_text(retry_after))]
                return render_template("onboarding/change_email.html", form=form, user=user), 429, retry_after_header(retry_after)
            flash(f"We sent a link to {form.email.data.strip().lower()}. Your address changes once you open it.")
            return redirect(url_for("account.account"))
    return render_template("onboarding/change_email.html", form=form, user=user), 400
