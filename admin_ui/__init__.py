"""The admin web UI under /admin: users, clients, sessions, keys, jobs and the audit log.

Registered by the app factory (`idp.configure_blueprints`); registering the blueprint also wires
flask-login, the /admin guard and the security headers (admin_ui/auth.py).
"""

from __future__ import annotations

from admin_ui import auth, views
from admin_ui.blueprint import bp
from admin_ui.views import audit, clients, common, dashboard, jobs, keys, mfa, sessions, throttles, users  # noqa: F401  (they register on `bp`)

__all__ = ["bp"]

bp.record_once(lambda state: auth.init_app(state.app))
bp.add_app_template_filter(views.common.format_datetime, "admin_dt")
