"""Errors the services raise and how the web layer renders them: JSON for APIs, escaped HTML for pages."""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, render_template, render_template_string, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from idp.web.errors import wants_json

log = logging.getLogger(__name__)


class IdpError(Exception):
    """Base of the IdP's own errors; the message is one line, safe to show to the caller."""


class ValidationError(IdpError):
    """Input was refused; `field` names the offending input where there is one."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class NotFoundError(IdpError):
    """The named object does not exist."""


# RFC 6749 4.1.2.1 and OIDC Core 3.1.2.6 error codes, in words for the person who sees the page (the
# code itself stays in the details line, for the developer of the application).
PROTOCOL_ERRORS = {
    "invalid_client": "This application isn't registered here, so you can't sign in to it with this account.",
    "invalid_request": "The application sent a sign-in request this server can't accept.",
    "invalid_redirect_uri": "The application asked to send you back to an address it hasn't registered here.",
    "unauthorized_client": "This application isn't allowed to sign people in this way.",
    "unsupported_response_type": "The application asked for a kind of sign-in this server doesn't offer.",
    "invalid_scope": "The application asked for access this server doesn't grant.",
    "access_denied": "Access was refused.",
    "server_error": "Something went wrong on our side.",
    "temporarily_unavailable": "This service is busy right now.",
    "login_required": "You need to sign in first.",
    "consent_required": "You need to allow this application first.",
    "request_not_supported": "The application sent its request in a form this server doesn't accept.",
    "request_uri_not_supported": "The application sent its request in a form this server doesn't accept.",
}
PROTOCOL_NEXT_STEP = "Go back to the application and try again. If it keeps happening, tell the application's developers."

# HTTP errors a person may meet, in words (RFC 9110 15); the status stays in the details line.
HTTP_ERRORS = {
    400: ("Something is wrong with that request", "This page could not handle what the browser sent."),
    401: ("Sign in first", "You need to sign in to see this page."),
    403: ("Not allowed", "You don't have access to this page."),
    404: ("Page not found", "There is nothing at this address. Check it, or start from the home page."),
    405: ("That doesn't work here", "This address doesn't take that kind of request. Start from the home page."),
    413: ("Too much data", "The browser sent more than this page accepts."),
    429: ("Too many attempts", "Wait a moment, then try again."),
    500: ("Something went wrong", "The server could not complete the request. Try again in a moment."),
    503: ("Temporarily unavailable", "This service is temporarily unavailable. Please try again in a moment."),
}


def render_error_page(status: int, title: str, message: str, details: str | None = None, action: tuple[str, str] | None = None):
    """An error page in the shared layout; Jinja escapes everything, so input is never reflected raw.

    `details` is the technical line for developers; `action` a (label, url) to carry on with.
    """
    link = {"label": action[0], "url": action[1]} if action else None
    try:
        page = render_template("error.html", title=title, message=message, details=details, action=link)
    except Exception:  # noqa: BLE001  (the error page must render even when the layout cannot, e.g. mid-outage)
        log.exception("error page template failed; answering in plain HTML")
        page = render_template_string(PLAIN_ERROR_PAGE, title=title, message=message, details=details)
    return page, status


def render_protocol_error(status: int, code: str, description: str, title: str = "Sign-in request refused"):
    """A refused OAuth/OIDC request, explained in words, with `code: description` kept for developers."""
    message = f"{PROTOCOL_ERRORS.get(code, PROTOCOL_ERRORS['invalid_request'])} {PROTOCOL_NEXT_STEP}"
    return render_error_page(status, title, message, details=f"{code}: {description}" if description else code)


PLAIN_ERROR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>{{ title }}</h1><p>{{ message }}</p>{% if details %}<p>{{ details }}</p>{% endif %}</main></body></html>
"""


# What a person reads when a form they sent has expired (Flask-WTF's CSRFError), by the form's endpoint.
EXPIRED_FORM = ("This page expired", "This page was open too long or was sent twice, so nothing was done. Start again.", "Start again")
EXPIRED_FORMS = {
    "auth.login": ("This sign-in page expired", "This sign-in page expired; start again. You are not signed in yet.", "Sign in again"),
    "auth.consent": ("This page expired", "This page expired before you answered; start again from the application.", "Sign in again"),
    "logout.end_session": ("This sign-out page expired", "This sign-out page expired, so you are still signed in. Start again.", "Sign out again"),
}


def expired_form_restart() -> str:
    """Where to start again after an expired form: the same address by GET (query kept), if it has a page."""
    has_page = current_app.url_map.bind_to_environ(request.environ).test(request.path, method="GET")
    return request.full_path.rstrip("?") if has_page else url_for("ui.landing")


def register_error_handlers(app: Flask) -> None:
    """Render every HTTP error without a stack trace; log unexpected ones with detail."""

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException):
        if wants_json():
            response = jsonify(error=error.name.lower().replace(" ", "_"), error_description=error.description)
            response.status_code = error.code or 500
            if error.code == 405 and error.valid_methods:
                response.headers["Allow"] = ", ".join(error.valid_methods)
            return response
        status = error.code or 500
        title, message = HTTP_ERRORS.get(status, (error.name, ""))
        # Werkzeug's stock sentences add nothing to ours; a view's own description is kept.
        described = error.description if error.description and error.description != type(error).description else None
        page, status = render_error_page(status, title, described or message, details=f"HTTP {status} {error.name}",
                                         action=("Go to the home page", url_for("ui.landing")))
        headers = {"Allow": ", ".join(error.valid_methods)} if error.code == 405 and getattr(error, "valid_methods", None) else {}
        return page, status, headers

    @app.errorhandler(CSRFError)
    def handle_expired_form(error: CSRFError):
        # A stale or replayed form (the CSRF token expired with the session, or was used on another
        # browser): say so in words and offer the page again, never a bare 400.
        if wants_json():
            return handle_http_exception(error)
        title, message, label = EXPIRED_FORMS.get(request.endpoint or "", EXPIRED_FORM)
        page, status = render_error_page(400, title, message, details=f"HTTP 400: {error.description}", action=(label, expired_form_restart()))
        return page, status

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return handle_http_exception(InternalServerError("The server could not complete the request."))
