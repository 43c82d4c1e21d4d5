"""The audit log: filter by actor, action, target and time range; newest first."""

from __future__ import annotations

from flask import render_template, request

from admin_ui.blueprint import bp
from admin_ui.forms import AuditFilterForm
from admin_ui.queries import audit_page
from admin_ui.views.common import cursor_args


@bp.get("/audit")
def audit():
    """Audit events with filters and keyset pages."""
    filters = AuditFilterForm(formdata=request.args)
    if not filters.validate():
        return render_template("admin/audit/list.html", page=None, filters=filters), 400
    page = audit_page(
        actor=(filters.actor.data or "").strip(),
        action=(filters.action.data or "").strip(),
        target=(filters.target.data or "").strip(),
        since=filters.utc(filters.since),
        until=filters.utc(filters.until),
        **cursor_args(),
    )
    return render_template("admin/audit/list.html", page=page, filters=filters)
