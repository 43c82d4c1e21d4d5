"""Authorization requests in progress, kept in the browser's server-side session.

/authorize sends the browser to /login or /consent and those pages send it back to /authorize
with the same parameters, which are validated again from scratch. What the pages did for a
request (a sign-in, a consent decision) is remembered here under the request's id, together
with the session `sid` it happened in, so it counts only for that browser and that sign-in: a
`prompt=login` is satisfied by the sign-in made for it, not by replaying the URL.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from flask import session
from werkzeug.datastructures import MultiDict

from idp.security import digest

SESSION_KEY = "authz"
# One browser's requests in flight are bounded in number and size (the session row carries them);
# beyond either bound the oldest are dropped. A single request larger than MAX_REQUEST_BYTES is refused.
MAX_PENDING = 8
MAX_PENDING_BYTES = 64 * 1024
MAX_REQUEST_BYTES = 16 * 1024  # each parameter is at most 4096 characters (idp.web.params.MAX_PARAMETER_LENGTH)
# The parameters /authorize acts on (RFC 6749 4.1.1, RFC 7636 4.3, OIDC Core 3.1.2.1 and 6).
# Others are ignored, and so are not carried from page to page.
KNOWN_PARAMETERS = (
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "prompt", "max_age",
    "login_hint", "id_token_hint", "code_challenge", "code_challenge_method", "response_mode",
    "acr_values", "ui_locales", "display", "claims", "request", "request_uri", "registration",
)


def known_parameters(values: MultiDict) -> list[tuple[str, str]]:
    """The request's known parameters as (name, value) pairs, in a canonical order."""
    return sorted((name, value) for name in KNOWN_PARAMETERS for value in values.getlist(name))


def too_large(parameters: list[tuple[str, str]]) -> bool:
    """Whether a request is too large to be kept while the user signs in."""
    return len(urlencode(parameters)) > MAX_REQUEST_BYTES


def request_id(parameters: list[tuple[str, str]]) -> str:
    """A stable id for an authorization request: the digest of its canonical parameters."""
    return digest(urlencode(parameters))[:32]


def _all() -> dict:
    pending = session.get(SESSION_KEY)
    return pending if isinstance(pending, dict) else {}


def get(rid: str | None) -> dict | None:
    """The pending request with this id, or None."""
    entry = _all().get(rid or "")
    return entry if isinstance(entry, dict) else None


def remember(parameters: list[tuple[str, str]]) -> str:
    """Keep a request while the user signs in or decides; return its id (what happened to it so far is kept)."""
    rid = request_id(parameters)
    pending = dict(_all())
    entry = dict(pending.pop(rid, None) or {})
    entry.update(params=[list(pair) for pair in parameters], at=time.time())
    pending[rid] = entry
    while len(pending) > MAX_PENDING or (len(pending) > 1 and len(json.dumps(pending)) > MAX_PENDING_BYTES):
        pending.pop(min(pending, key=lambda key: pending[key].get("at", 0)))
    session[SESSION_KEY] = pending
    return rid


def note(rid: str, **facts) -> None:
    """Record what happened to a pending request (e.g. login_sid=..., consent="allow")."""
    pending = dict(_all())
    if rid in pending:
        pending[rid] = {**pending[rid], **facts}
        session[SESSION_KEY] = pending


def forget(rid: str) -> None:
    """Drop a request once it has been answered."""
    pending = dict(_all())
    if pending.pop(rid, None) is not None:
        session[SESSION_KEY] = pending


def carried() -> dict:
    """Every pending request, to carry into the new session a sign-in starts."""
    return {SESSION_KEY: _all()} if _all() else {}


def parameters(entry: dict) -> MultiDict:
    """A pending request's parameters."""
    return MultiDict([tuple(pair) for pair in entry.get("params", [])])


def resume_url(entry: dict, authorize_path: str) -> str:
    """Where the browser goes to continue the request: /authorize with the same parameters."""
    return authorize_path + "?" + urlencode([tuple(pair) for pair in entry.get("params", [])])
