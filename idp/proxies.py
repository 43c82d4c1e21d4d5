"""Client address, scheme and host through trusted reverse proxies (IDP_TRUSTED_PROXIES).

With TRUSTED_PROXIES = N > 0, Werkzeug's ProxyFix takes X-Forwarded-For, -Proto, -Host and -Port
from the N-th value from the right, the one the proxy nearest to us appended; values to its left
were written by the client and are never believed. With 0 (the default) the headers are ignored.
A forwarded value that is not an IP address, a scheme or a host name is dropped, and the
connection's own value kept: a malformed header is ignored, never a 500 or a bogus row.
gunicorn trusts no forwarded header itself (idp/processes.py), so this is the only place that does.
"""

from __future__ import annotations

import ipaddress
import re

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
_ORIGINAL = "werkzeug.proxy_fix.orig"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_port(value: str | None) -> bool:
    return value is not None and value.isdigit() and 0 < int(value) < 65536


class _DropMalformed:
    """Runs inside ProxyFix: puts back the connection's value of anything forwarded malformed."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        original = environ.get(_ORIGINAL, {})
        if not _is_ip(environ.get("REMOTE_ADDR") or ""):
            environ["REMOTE_ADDR"] = original.get("REMOTE_ADDR")
        if environ.get("wsgi.url_scheme") not in {"http", "https"}:
            environ["wsgi.url_scheme"] = original.get("wsgi.url_scheme")
        if not _HOST.match(environ.get("HTTP_HOST") or "") or not _is_port(environ.get("SERVER_PORT")):
            for key in ("HTTP_HOST", "SERVER_NAME", "SERVER_PORT"):
                environ[key] = original.get(key)
        return self.app(environ, start_response)


def init_proxies(app: Flask) -> None:
    """Believe X-Forwarded-* from exactly TRUSTED_PROXIES hops; with 0, never."""
    hops = app.config["TRUSTED_PROXIES"]
    if hops:
        app.wsgi_app = ProxyFix(_DropMalformed(app.wsgi_app), x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
