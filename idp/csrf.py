"""CSRF protection: Flask-WTF's token, plus the Origin header where the browser sends one.

Flask-WTF's WTF_CSRF_SSL_STRICT check demands, on https, a Referer from this host; our pages
send `Referrer-Policy: same-origin` and browsers or privacy tools may strip it anyway, so it is
off. Instead a state-changing request that carries `Origin` must come from the issuer's origin
(the Fetch standard sends it on every POST; RFC 6454 7): a cross-site form, or an opaque `null`
origin, is refused even before the token is looked at.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request
from flask_wtf import CSRFProtect
from flask_wtf.csrf import CSRFError


def issuer_origin(issuer: str) -> str:
    """scheme://host[:port] of the issuer, as a browser serializes an origin (RFC 6454 6.1)."""
    parts = urlsplit(issuer)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_origin() -> None:
    """CSRFError (400) when a state-changing request names an origin other than the issuer's."""
    if request.method not in current_app.config["WTF_CSRF_METHODS"]:
        return
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() != issuer_origin(current_app.config["ISSUER"]):
        raise CSRFError("The request did not come from this site.")


class OriginCheckingCSRF(CSRFProtect):
    """CSRFProtect whose check first compares Origin with the issuer's origin."""

    def init_app(self, app) -> None:
        app.config["WTF_CSRF_SSL_STRICT"] = False  # the Origin check replaces the Referer check
        super().init_app(app)

    def protect(self, apply_exemptions: bool = False) -> None:
        # Flask-WTF 1.3 calls this from its before_request with apply_exemptions=True.
        if not (apply_exemptions and (not request.endpoint or self._is_exempt())):
            check_origin()
        super().protect(apply_exemptions=apply_exemptions)
