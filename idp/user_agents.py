"""User-Agent strings in words ("Chrome on Linux"), for the account page and the admin UI.

A few ordered patterns are enough for a label people recognise; the raw string stays available
(the admin UI shows it on hover). RFC 9110 10.1.5: product tokens come first, most significant
first, but browsers carry each other's tokens for compatibility, hence the order below.
"""

from __future__ import annotations

import re

# Checked in order: Edge and Opera also say "Chrome", Chrome also says "Safari", iOS browsers say "Safari".
_BROWSERS = (
    ("Edge", r"Edg(e|A|iOS)?/"),
    ("Opera", r"OPR/|Opera"),
    ("Samsung Internet", r"SamsungBrowser/"),
    ("Firefox", r"Firefox/|FxiOS/"),
    ("Chrome", r"Chrome/|Chromium/|CriOS/"),
    ("Safari", r"Safari/"),
)
# Android and ChromeOS also say "Linux", iPhones and iPads also say "Mac OS X".
_SYSTEMS = (
    ("iPhone", r"iPhone"),
    ("iPad", r"iPad"),
    ("Android", r"Android"),
    ("ChromeOS", r"CrOS"),
    ("Windows", r"Windows"),
    ("macOS", r"Mac OS X|Macintosh"),
    ("Linux", r"Linux|X11"),
)
# Programs that are not browsers: their product name is the label (`curl/8.5.0` -> "curl").
_TOOLS = re.compile(r"^(curl|Wget|python-requests|python-httpx|okhttp|Go-http-client|PostmanRuntime|HTTPie)/", re.IGNORECASE)

UNKNOWN = "Unknown device"


def describe(user_agent: str | None) -> str:
    """A short human name for a User-Agent, e.g. "Firefox on Linux", "curl", or "Unknown device"."""
    agent = (user_agent or "").strip()
    tool = _TOOLS.match(agent)
    if tool:
        return tool.group(1)
    browser = next((name for name, pattern in _BROWSERS if re.search(pattern, agent)), None)
    system = next((name for name, pattern in _SYSTEMS if re.search(pattern, agent)), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or UNKNOWN
