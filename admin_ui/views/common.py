"""Helpers shared by the admin views."""

from __future__ import annotations

from datetime import timezone

from flask import abort, request
from flask_login import current_user

from idp.db import db


def actor() -> str:
    """The signed-in admin, as audit events name them."""
    return current_user.actor


def get_or_404(model, ident):
    """The row with this primary key, or 404 (a tampered or stale id)."""
    row = db.session.get(model, ident)
    if row is None:
        abort(404)
    return row


def cursor_args() -> dict:
    """The `after` / `before` keyset cursors of a list page's URL."""
    return {"after": request.args.get("after") or None, "before": request.args.get("before") or None}


def format_datetime(value) -> str:
    """A timestamp as admins read it: `2026-11-27 14:05 UTC`."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if value else ""
