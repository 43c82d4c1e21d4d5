"""The one safe-redirect guard: where a `next` parameter may send a browser after a sign-in.

Only a path on this server qualifies (RFC 9700 4.11: an open redirector lends this origin's trust
to any other): no scheme, no host, no `//` or `/\\`-style scheme-relative forms, no control
characters (which browsers strip, turning `/\\t/evil.example` into `//evil.example`).
"""

from __future__ import annotations

import re
from collections.abc import Container
from urllib.parse import SplitResult, urlsplit

# urlsplit silently drops tab, CR and LF (WHATWG URL), and so do browsers: "/\t/evil" is "//evil".
_CONTROL = re.compile("[\x00-\x20\x7f\\\\]")


def split_local_path(target: str | None) -> SplitResult | None:
    """`target` split, if it is a path on this server (no scheme, no host); None otherwise. Never raises."""
    if not target or not target.startswith("/") or target.startswith("//") or _CONTROL.search(target):
        return None
    try:
        parts = urlsplit(target)
    except ValueError:  # e.g. "Invalid IPv6 URL" for an unbalanced "[" in what urlsplit takes for a host
        return None
    return None if parts.scheme or parts.netloc or parts.path.startswith("//") else parts


def safe_next(target: str | None, *, within: str = "/", refuse: Container[str] = ()) -> str | None:
    """`target` as a path and query on this server under the prefix `within`, or None (also for a path in `refuse`)."""
    parts = split_local_path(target)
    if parts is None:
        return None
    prefix = within.rstrip("/")
    if prefix and parts.path != prefix and not parts.path.startswith(prefix + "/"):
        return None
    if parts.path in refuse:
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")
