"""The operator's branding (IDP_BRAND_*): the colours derived from it and the image origins it needs."""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlsplit

# Body text colour of the stylesheet; links fall back to it when the brand colour is too light.
TEXT_COLOR = "#1b1f24"
# WCAG 2.1 success criterion 1.4.3: 4.5:1 for normal text.
MINIMUM_CONTRAST = 4.5


def _luminance(color: str) -> float:
    """Relative luminance of `#rrggbb` (WCAG 2.1, definition of relative luminance)."""
    channels = []
    for start in (1, 3, 5):
        value = int(color[start:start + 2], 16) / 255
        channels.append(value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4)
    red, green, blue = channels
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two `#rrggbb` colours, 1 to 21."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def text_on(color: str) -> str:
    """Black or white, whichever reads better on `color`."""
    return "#000000" if contrast(color, "#000000") >= contrast(color, "#ffffff") else "#ffffff"


def link_color(color: str) -> str:
    """The brand colour for links on white when it is dark enough to read, else the body text colour."""
    return color if contrast(color, "#ffffff") >= MINIMUM_CONTRAST else TEXT_COLOR


def theme_css(config: Mapping[str, Any]) -> str:
    """The custom properties the stylesheet reads (idp/ui/static/idp.css): brand, text on it, links."""
    color = config["BRAND_COLOR"]
    return f":root {{ --brand: {color}; --brand-text: {text_on(color)}; --accent: {link_color(color)}; --accent-dark: {TEXT_COLOR}; }}\n"


def image_sources(config: Mapping[str, Any]) -> str:
    """CSP img-src for branded pages: this server, and the logo's origin when it is an https URL."""
    logo = config.get("BRAND_LOGO_URL") or ""
    parts = urlsplit(logo)
    return f"'self' https://{parts.netloc}" if parts.scheme == "https" else "'self'"
