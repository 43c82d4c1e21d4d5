"""Security and caching headers, set one way: named header sets applied by `secure(response, ...)`.

- No caching of anything personal or secret: `Cache-Control: no-store` (RFC 9111 5.2.2.5), and on
  token responses `Pragma: no-cache` as well (RFC 6749 5.1).
- No framing of any page with a button on it (RFC 6749 10.13, clickjacking): `X-Frame-Options`
  and CSP `frame-ancestors 'none'`.
- The sign-out pages and the admin UI also send no Referer off-site; the admin UI runs under a
  strict same-origin CSP and HSTS on https.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, Response, current_app

from idp.branding import image_sources

NO_STORE: Mapping[str, str] = {"Cache-Control": "no-store"}
# RFC 6749 5.1: tokens, and errors about them, are never cached.
TOKEN_RESPONSE: Mapping[str, str] = {**NO_STORE, "Pragma": "no-cache"}
NO_FRAMING: Mapping[str, str] = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
# Sign-in, consent, second factor and account pages.
USER_PAGES: Mapping[str, str] = {**NO_FRAMING, **NO_STORE}
# The sign-out pages load only the shared stylesheet and the favicon or logo, no script, and must
# not leak an id_token_hint by Referer.
LOGOUT_PAGES: Mapping[str, str] = {
    **USER_PAGES,
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src {images}; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "same-origin",
}
# Pages reached from a mailed link (reset, verification, invitation): the URL may have held a
# token, so it is never sent on as a Referer.
LINK_PAGES: Mapping[str, str] = {**USER_PAGES, "Referrer-Policy": "no-referrer"}
ADMIN_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src {images}; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
ADMIN_PAGES: Mapping[str, str] = {
    **USER_PAGES,
    "Content-Security-Policy": ADMIN_CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"


def secure(response: Response, headers: Mapping[str, str], *, hsts: bool = False) -> Response:
    """Set `headers` on `response` (and HSTS when asked and the issuer is https); returns the response."""
    for name, value in headers.items():
        # `{images}`: this server and the brand logo's origin (CSP img-src), from the configuration.
        response.headers[name] = value.replace("{images}", image_sources(current_app.config))
    if hsts and current_app.config["ISSUER"].startswith("https://"):
        response.headers["Strict-Transport-Security"] = HSTS
    return response


def protect(bp: Blueprint, headers: Mapping[str, str]) -> None:
    """Send `headers` on every response of the blueprint's views."""
    bp.after_request(lambda response: secure(response, headers))
