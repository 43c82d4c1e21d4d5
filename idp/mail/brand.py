"""The product name shown in mail, from the branding settings (IDP_BRAND_NAME)."""

from __future__ import annotations

from flask import current_app


def brand_name() -> str:
    """The operator's product name (IDP_BRAND_NAME), as every page shows it."""
    return current_app.config["BRAND_NAME"]
