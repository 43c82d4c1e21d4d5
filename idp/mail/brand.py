"""The product name shown in mail and pages."""

from __future__ import annotations

DEFAULT_BRAND_NAME = "idp"


def brand_name() -> str:
    """The product name (the branding settings are wired in at merge; until then, "idp")."""
    return DEFAULT_BRAND_NAME
