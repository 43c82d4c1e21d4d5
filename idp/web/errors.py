"""Whether an error is rendered as JSON or as an HTML page: marked on the views themselves.

Protocol endpoints (token, revocation, introspection, userinfo, discovery, JWKS) speak JSON,
errors included (RFC 6749 5.2, RFC 6750 3.1); everything a person sees gets a page. A view or a
whole blueprint says which with `json_errors`; a request for no view at all (404, 405) goes by the
view the path would have reached with another method, else by its Accept header.
"""

from __future__ import annotations

from typing import TypeVar

from flask import current_app, request
from werkzeug.exceptions import HTTPException

MARK = "json_errors"
T = TypeVar("T")


def json_errors(target: T) -> T:
    """Mark a view function (as a decorator, under the route) or a whole blueprint as answering errors in JSON."""
    setattr(target, MARK, True)
    return target


def _marked(endpoint: str | None) -> bool:
    if not endpoint:
        return False
    view = current_app.view_functions.get(endpoint)
    blueprint = current_app.blueprints.get(endpoint.rpartition(".")[0]) if "." in endpoint else None
    return bool(getattr(view, MARK, False) or getattr(blueprint, MARK, False))


def _endpoint_for_other_methods() -> str | None:
    """On a 405, the endpoint the path belongs to (found with one of the methods it allows)."""
    error = request.routing_exception
    methods = getattr(error, "valid_methods", None) if isinstance(error, HTTPException) else None
    if not methods:
        return None
    try:
        endpoint, _ = current_app.url_map.bind_to_environ(request.environ).match(method=next(iter(methods)))
    except HTTPException:
        return None
    return endpoint


def wants_json() -> bool:
    """True when this request's errors are JSON: its view is marked, or the client asked for JSON."""
    if _marked(request.endpoint) or _marked(_endpoint_for_other_methods()):
        return True
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"
