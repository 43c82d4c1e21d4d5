"""Sessions: every active session, newest first, filterable by user, client and kind; revoke one or many."""

from __future__ import annotations

import re

from flask import abort, flash, redirect, render_template, request, url_for

from admin_ui import actions
from admin_ui.blueprint import bp
from admin_ui.auth import safe_next
from admin_ui.forms import ConfirmForm, SessionFilterForm
from admin_ui.queries import client_choices, sessions_page
from admin_ui.views.common import actor, cursor_args
from idp.clients.service import get_client
from idp.db import db
from idp.sessions.models import UserSession
from idp.users.service import get_user_by_email

SID = re.compile(r"^[A-Za-z0-9_-]{1,43}$")
MAX_REVOKE = 200


@bp.get("/sessions")
def sessions():
    """Active sessions with filters and keyset pages."""
    filters = SessionFilterForm(formdata=request.args)
    filters.client.choices = {"": "All clients", **dict(client_choices())}
    if not filters.validate():
        abort(400, "The filter is malformed.")
    user = client = None
    page = None
    if filters.user.data:
        user = get_user_by_email(filters.user.data)
    if filters.client.data:
        client = get_client(filters.client.data)
    if not (filters.user.data and user is None):
        page = sessions_page(user_id=user.id if user else None, client_pk=client.id if client else None,
                             kind=filters.kind.data or "", **cursor_args())
    return render_template("admin/sessions/list.html", page=page, filters=filters, user=user, client=client,
                           form=ConfirmForm(), here=request.full_path)


@bp.post("/sessions/revoke")
def sessions_revoke():
    """End the chosen sessions: one (its row's button) directly, several after a confirmation."""
    back = safe_next(request.form.get("next")) or url_for("admin.sessions")
    only = request.form.get("only")
    sids = [only] if only else request.form.getlist("sid")
    if not sids:
        flash("Select the sessions to revoke first.", "error")
        return redirect(back, 303)
    if len(sids) > MAX_REVOKE or not all(SID.match(sid) for sid in sids):
        abort(400, f"Choose between 1 and {MAX_REVOKE} sessions.")
    if only and db.session.scalar(db.select(UserSession.id).where(UserSession.sid == only)) is None:
        abort(404)
    if len(sids) > 1 and request.form.get("confirmed") != "yes":
        return render_template("admin/sessions/confirm.html", form=ConfirmForm(), sids=sids, back=back)
    ended = actions.revoke_sessions(sids, actor=actor())
    gone = len(sids) - ended
    message = f"Revoked {ended} session{'s; those browsers are' if ended != 1 else '; that browser is'} signed out."
    if gone:
        message += f" {gone} had already ended."
    flash(message, "success")
    return redirect(back, 303)
