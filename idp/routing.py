"""State changes only by POST (or an API's PUT/PATCH/DELETE), by construction.

RFC 9110 9.2.1: GET, HEAD and OPTIONS are safe; a browser sends them from any page without a CSRF
token (a cross-site `fetch(url, {method: 'HEAD', mode: 'no-cors'})` included), and Flask answers
HEAD through every GET view. So no URL rule may mix a safe method with a state-changing one: a page
that leads to an action is a GET rule that only renders, and the action is a separate POST rule on
the same URL, which Flask-WTF's CSRF check covers. `check_methods` refuses to build an app that
breaks this. The only exceptions are endpoints whose specification defines GET and POST alike
(`spec_defined_methods`); those never act on HEAD.
"""

from __future__ import annotations

from flask import Flask, abort, current_app, request

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RouteMethodError(RuntimeError):
    """A URL rule lets a safe method reach a state-changing view."""


def spec_defined_methods(reason: str):
    """Mark a protocol endpoint whose specification defines GET and POST alike (`reason` cites it)."""

    def mark(view):
        view.spec_defined_methods = reason
        return view

    return mark


def mixed_rules(app: Flask) -> list[str]:
    """Rules that accept a safe method and a state-changing one, without a specification's reason."""
    return sorted(
        f"{rule.rule} ({rule.endpoint})"
        for rule in app.url_map.iter_rules()
        if rule.methods & STATE_CHANGING_METHODS and rule.methods & {"GET", "HEAD"}
        and not getattr(app.view_functions[rule.endpoint], "spec_defined_methods", None)
    )


def check_methods(app: Flask) -> None:
    """Refuse an app where a GET or HEAD can reach a view that also takes a state-changing method."""
    mixed = mixed_rules(app)
    if mixed:
        raise RouteMethodError("a URL rule mixes GET and POST; split it into a GET page and a POST action: " + ", ".join(mixed))
    app.before_request(refuse_head_on_protocol_endpoints)


def refuse_head_on_protocol_endpoints():
    """HEAD never reaches an endpoint that may act on GET (405: it is no method of theirs)."""
    if request.method != "HEAD" or request.endpoint is None:
        return None
    if getattr(current_app.view_functions.get(request.endpoint), "spec_defined_methods", None):
        abort(405)
    return None
