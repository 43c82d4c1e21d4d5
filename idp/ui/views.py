"""The landing page (`/`), the favicon, the brand's theme stylesheet, and what every template may use."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, render_template, url_for

from idp.branding import text_on, theme_css
from idp.db import db
from idp.scopes import describe as describe_scope
from idp.sessions.service import current_session_row
from idp.user_agents import describe
from idp.users.models import User

bp = Blueprint("ui", __name__, template_folder="templates", static_folder="static", static_url_path="/assets")

FAVICON = Path(__file__).parent / "static" / "favicon.svg"
# Static files and the theme change only with a release or a restart; a short shared cache is safe.
CACHE_SECONDS = 300


@bp.app_context_processor
def brand():
    """`brand` in every template: the product name, the logo URL (or None) and the colour (IDP_BRAND_*)."""
    config = current_app.config
    return {"brand": {"name": config["BRAND_NAME"], "logo": config["BRAND_LOGO_URL"] or None, "color": config["BRAND_COLOR"]}}


@bp.app_template_filter("device")
def device(user_agent: str | None) -> str:
    """`{{ row.user_agent | device }}`: "Chrome on Linux" (idp/user_agents.py)."""
    return describe(user_agent)


@bp.app_template_filter("scope_description")
def scope_description(scope: str) -> str:
    """`{{ "email" | scope_description }}`: what granting the scope means, in words (idp/scopes.py)."""
    return describe_scope(scope)


@bp.get("/")
def landing():
    """What this server is, with links to the account page, the discovery document and, for an admin, the admin UI."""
    row = current_session_row()
    user = db.session.get(User, row.user_id) if row is not None and row.user_id else None
    return render_template(
        "landing.html",
        user=user,
        issuer=current_app.config["ISSUER"],
        discovery_url=current_app.config["ISSUER"] + "/.well-known/openid-configuration",
        admin_url=url_for("admin.dashboard") if user is not None and user.is_admin else None,
    )


@bp.get("/favicon.ico")
def favicon():
    """The icon browsers ask for on their own, in the brand colour (an SVG, which current browsers take at this path)."""
    color = current_app.config["BRAND_COLOR"]
    icon = FAVICON.read_text().replace("#1b2733", color).replace("#fff", text_on(color))
    response = Response(icon, mimetype="image/svg+xml")
    response.cache_control.public = True
    response.cache_control.max_age = CACHE_SECONDS
    return response


@bp.get("/theme.css")
def theme():
    """The brand colours as CSS custom properties: a same-origin stylesheet, so no page needs inline style."""
    response = Response(theme_css(current_app.config), mimetype="text/css")
    response.cache_control.public = True
    response.cache_control.max_age = CACHE_SECONDS
    return response
