"""Users: search, create, edit, disable/enable, password, admin rights, sign-out, sessions and grants."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from admin_ui import actions
from admin_ui.auth import recent_auth_required
from admin_ui.blueprint import bp
from admin_ui.forms import ConfirmForm, PasswordForm, UserCreateForm, UserEditForm, UserFilterForm, UserInviteForm
from admin_ui.queries import USER_STATUSES, recent_events_for, user_grants, users_page
from admin_ui.views.common import actor, cursor_args, get_or_404
from idp.clients.service import get_client
from idp.db import db
from idp.errors import ValidationError
from idp.grants import revoke_app
from idp.onboarding.service import invite, send_verification
from idp.sessions.service import list_sessions_for_user
from idp.signout import set_password
from idp.users.models import User
from idp.users.service import create_user, enable_user, update_user


def apply_service_error(form, error: ValidationError) -> None:
    """Show a service's refusal on the field it names, or above the form."""
    field = getattr(form, error.field, None) if error.field else None
    if field is not None:
        field.errors = [*field.errors, str(error)]
    else:
        form.form_errors.append(str(error))


@bp.get("/users")
def users():
    """Users by email, with prefix search and keyset pages."""
    filters = UserFilterForm(formdata=request.args)
    filters.status.choices = dict(USER_STATUSES)
    if not filters.validate():
        abort(400, "The search is malformed.")
    page = users_page(filters.q.data or "", filters.status.data or "", **cursor_args())
    return render_template("admin/users/list.html", page=page, filters=filters)


@bp.get("/users/new")
def user_new_page():
    """The form to create an account."""
    return render_template("admin/users/new.html", form=UserCreateForm())


@bp.post("/users/new")
def user_new():
    """Create an account."""
    form = UserCreateForm()
    if form.validate_on_submit():
        try:
            user = create_user(form.email.data, form.password.data, name=form.name.data, actor=actor())
        except ValidationError as error:
            db.session.rollback()  # the 400 would too; now, so the form shows stored values, not half-changed ones
            apply_service_error(form, error)
        else:
            flash(f"Created {user.email}.", "success")
            return redirect(url_for("admin.user_detail", user_id=user.id), 303)
    return render_template("admin/users/new.html", form=form), 400


@bp.get("/users/invite")
def user_invite_page():
    """The form to invite someone by email."""
    return render_template("admin/users/invite.html", form=UserInviteForm())


@bp.post("/users/invite")
def user_invite():
    """Create an account without a password and mail its owner an invitation link."""
    form = UserInviteForm()
    if form.validate_on_submit():
        try:
            user = invite(form.email.data, name=form.name.data, actor=actor())
        except ValidationError as error:
            db.session.rollback()  # the 400 would too; now, so the form shows stored values, not half-changed ones
            apply_service_error(form, error)
        else:
            flash(f"Invited {user.email}: they choose their password through the link mailed to them.", "success")
            return redirect(url_for("admin.user_detail", user_id=user.id), 303)
    return render_template("admin/users/invite.html", form=form), 400


@bp.post("/users/<int:user_id>/resend-verification")
def user_resend_verification(user_id: int):
    """Mail a new verification link (the pending address, or the unverified current one)."""
    user = get_or_404(User, user_id)

    def act():
        link = send_verification(user, actor=actor())
        return f"Sent a verification link to {link.email}."

    return run_action(user, act)


@bp.get("/users/<int:user_id>")
def user_detail(user_id: int):
    """One account: profile, actions, sessions, grants and recent events."""
    user = get_or_404(User, user_id)
    return render_template(
        "admin/users/detail.html",
        user=user,
        sessions=list_sessions_for_user(user.id),
        grants=user_grants(user.id),
        events=recent_events_for(f"user:{user.id}"),
        form=ConfirmForm(),
        is_self=user.id == current_user.user.id,
    )


@bp.get("/users/<int:user_id>/edit")
def user_edit_page(user_id: int):
    """The form to change email and display name."""
    user = get_or_404(User, user_id)
    return render_template("admin/users/edit.html", form=UserEditForm(obj=user), user=user)


@bp.post("/users/<int:user_id>/edit")
def user_edit(user_id: int):
    """Change email and display name."""
    user = get_or_404(User, user_id)
    form = UserEditForm(obj=user)
    if form.validate_on_submit():
        old_email = user.email
        try:
            update_user(user, email=form.email.data, name=form.name.data, actor=actor())
        except ValidationError as error:
            db.session.rollback()  # the 400 would too; now, so the form shows stored values, not half-changed ones
            apply_service_error(form, error)
        else:
            if user.email != old_email:
                send_verification(user, actor=actor())  # the new address is unproven until its owner opens the link
            flash(f"Saved {user.email}.", "success")
            return redirect(url_for("admin.user_detail", user_id=user.id), 303)
    return render_template("admin/users/edit.html", form=form, user=user), 400


@bp.get("/users/<int:user_id>/password")
def user_password_page(user_id: int):
    """The form to set a new password."""
    user = get_or_404(User, user_id)
    return render_template("admin/users/password.html", form=PasswordForm(), user=user)


@bp.post("/users/<int:user_id>/password")
def user_password(user_id: int):
    """Set a new password; the user's sessions and tokens end."""
    user = get_or_404(User, user_id)
    form = PasswordForm()
    if form.validate_on_submit():
        set_password(user, form.password.data, actor=actor())
        if user.id == current_user.user.id:
            return redirect(url_for("admin.login", signed_out="password"), 303)  # this session ended too
        flash(f"Password set for {user.email}; their sessions and tokens have ended.", "success")
        return redirect(url_for("admin.user_detail", user_id=user.id), 303)
    return render_template("admin/users/password.html", form=form, user=user), 400


# Each user action is a GET confirmation page that only renders and a POST on the same URL that acts.
def confirm_page(user: User, *, title: str, message: str, button: str, fields: dict | None = None):
    """The confirmation page of a user action; its form POSTs to the same URL (with `fields` as hidden inputs)."""
    return render_template("admin/confirm.html", form=ConfirmForm(), title=title, message=message, fields=fields,
                           button=button, danger=True, cancel=url_for("admin.user_detail", user_id=user.id))


def run_action(user: User, act, *, then: str | None = None):
    """Run a confirmed user action (POST only) and go to `then` (default: the user's page).

    `act()` returns the flash message; a ValidationError from it (e.g. locking yourself out) is
    shown instead and nothing changes.
    """
    back = url_for("admin.user_detail", user_id=user.id)
    try:
        flash(act(), "success")
    except ValidationError as error:
        # Needed: the 303 below keeps the request's changes (idp/db.py), and the refused action
        # may have half-written; nothing before it in this request writes.
        db.session.rollback()
        flash(str(error).capitalize() + ".", "error")
        return redirect(back, 303)
    return redirect(then or back, 303)


@bp.get("/users/<int:user_id>/disable")
def user_disable_page(user_id: int):
    """Confirm disabling an account."""
    user = get_or_404(User, user_id)
    return confirm_page(user, title=f"Disable {user.email}?", button="Disable account",
                        message="They are signed out everywhere at once, every refresh token they hold stops working, "
                                "and they cannot sign in until an admin enables the account again.")


@bp.post("/users/<int:user_id>/disable")
def user_disable(user_id: int):
    """Disable an account: it cannot sign in, and its sessions and tokens end."""
    user = get_or_404(User, user_id)

    def act():
        actions.disable(user, actor=actor())
        return f"Disabled {user.email}."

    return run_action(user, act)


@bp.get("/users/<int:user_id>/delete")
def user_delete_page(user_id: int):
    """Confirm deleting an account."""
    user = get_or_404(User, user_id)
    return confirm_page(user, title=f"Delete {user.email}?", button="Delete account",
                        message="The account, its sessions, remembered consents and refresh tokens are deleted, and "
                                "relying parties are told it signed out. The audit log keeps its events. This cannot be undone.")


@bp.post("/users/<int:user_id>/delete")
def user_delete(user_id: int):
    """Delete an account with its sessions, consents and refresh tokens."""
    user = get_or_404(User, user_id)
    email = user.email

    def act():
        actions.delete(user, actor=actor())
        return f"Deleted {email}."

    return run_action(user, act, then=url_for("admin.users"))


@bp.post("/users/<int:user_id>/enable")
def user_enable(user_id: int):
    """Enable a disabled account."""
    user = get_or_404(User, user_id)
    enable_user(user, actor=actor())
    flash(f"Enabled {user.email}; they can sign in again.", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id), 303)


@bp.get("/users/<int:user_id>/grant-admin")
@recent_auth_required
def user_grant_admin_page(user_id: int):
    """Confirm granting admin rights (recent password required)."""
    user = get_or_404(User, user_id)
    return confirm_page(user, title=f"Make {user.email} an admin?", button="Grant admin rights",
                        message="They will be able to do everything you can here: manage users, clients, sessions and "
                                "signing keys. Their current sessions end, so they sign in again with the new rights.")


@bp.post("/users/<int:user_id>/grant-admin")
@recent_auth_required
def user_grant_admin(user_id: int):
    """Grant admin rights (recent password required)."""
    user = get_or_404(User, user_id)

    def act():
        actions.set_admin(user, True, actor=actor())
        return f"{user.email} is now an admin."

    return run_action(user, act)


@bp.get("/users/<int:user_id>/revoke-admin")
def user_revoke_admin_page(user_id: int):
    """Confirm revoking admin rights."""
    user = get_or_404(User, user_id)
    return confirm_page(user, title=f"Revoke admin rights of {user.email}?", button="Revoke admin rights",
                        message="Their admin sessions end at once; their end-user account stays as it is.")


@bp.post("/users/<int:user_id>/revoke-admin")
def user_revoke_admin(user_id: int):
    """Revoke admin rights; never your own."""
    user = get_or_404(User, user_id)

    def act():
        actions.set_admin(user, False, actor=actor())
        return f"{user.email} is no longer an admin."

    return run_action(user, act)


@bp.get("/users/<int:user_id>/sign-out")
def user_sign_out_page(user_id: int):
    """Confirm signing a user out everywhere."""
    user = get_or_404(User, user_id)
    return confirm_page(user, title=f"Sign {user.email} out everywhere?", button="Sign out everywhere",
                        message="Every browser session ends, every refresh token stops working and access tokens are "
                                "refused wherever the token version is checked. They can sign in again.")


@bp.post("/users/<int:user_id>/sign-out")
def user_sign_out(user_id: int):
    """Sign a user out everywhere: every session and token they hold ends."""
    user = get_or_404(User, user_id)
    own = user.id == current_user.user.id

    def act():
        ended = actions.sign_out_everywhere(user, actor=actor())
        return f"Signed {user.email} out everywhere ({ended} session{'s' if ended != 1 else ''} ended)."

    # Signing yourself out everywhere ends this session too: go to the sign-in page.
    return run_action(user, act, then=url_for("admin.login", signed_out=1) if own else None)


@bp.post("/users/<int:user_id>/grants/<client_id>/revoke")
def user_revoke_grant(user_id: int, client_id: str):
    """Revoke what a user granted one client: its consent and live refresh tokens."""
    user = get_or_404(User, user_id)
    client = get_client(client_id) or abort(404)
    families = revoke_app(user.id, client.client_id, actor=actor())
    flash(f"Revoked {client.name}'s access for {user.email} ({families} refresh token famil{'ies' if families != 1 else 'y'}).", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id), 303)
