"""The admin UI's blueprint, in a module of its own so views and auth can import it without the package."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates", static_folder="static")
