"""Throttles: the accounts and addresses backed off after wrong passwords, and clearing one."""

from __future__ import annotations

from datetime import datetime, timezone

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from admin_ui.blueprint import bp
from admin_ui.forms import ConfirmForm
from admin_ui.views.common import actor
from idp.auth import throttle
from idp.db import db
from idp.errors import NotFoundError
from idp.users.models import User

KINDS = {"account_ip": "Account from one address", "ip": "Address (any account)", "account": "Account from new addresses"}


def _when(seconds: int) -> datetime | None:
    return datetime.fromtimestamp(seconds, timezone.utc) if seconds else None


def _users(rows) -> dict[str, User]:
    """The users behind `user:N` account keys, by key (unknown emails stay hashed)."""
    ids = {int(row.account.removeprefix("user:")) for row in rows if row.account and row.account.startswith("user:")}
    users = db.session.scalars(select(User).where(User.id.in_(ids))) if ids else []
    return {f"user:{user.id}": user for user in users}


@bp.get("/throttles")
def throttles():
    """Buckets in back-off or with recent wrong passwords, the longest back-off first."""
    rows = throttle.active()
    now = throttle.now_seconds()
    shown = [{
        "row": row, "kind": KINDS.get(row.kind, row.kind), "blocked": row.blocked_until > now,
        "blocked_until": _when(row.blocked_until), "last_failure": _when(row.last_failure_at),
    } for row in rows]
    return render_template("admin/throttles/list.html", rows=shown, users=_users(rows), form=ConfirmForm())


@bp.post("/throttles/clear")
def throttle_clear():
    """Forget one bucket's failures and lift its back-off (audited as `throttle.cleared`)."""
    key = request.form.get("key", "")
    if not key or len(key) > 160:
        abort(400, "Choose a throttle to clear.")
    try:
        throttle.clear(key, actor=actor())
    except NotFoundError:
        abort(404)
    flash("Throttle cleared: the next password is checked again.", "success")
    return redirect(url_for("admin.throttles"), 303)
