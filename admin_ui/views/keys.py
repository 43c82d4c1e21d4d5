"""Signing keys: each algorithm's timeline (next, active, retired, revoked) with dates."""

from __future__ import annotations

from flask import current_app, render_template

from admin_ui import bp
from admin_ui.queries import keys_by_algorithm
from idp.keyring.service import list_keys


@bp.get("/keys")
def keys():
    """The keyring, per algorithm, newest first."""
    return render_template("admin/keys/list.html", groups=keys_by_algorithm(list_keys()),
                           jwks_max_age=current_app.config["JWKS_MAX_AGE"])
