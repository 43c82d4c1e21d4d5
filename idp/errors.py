"""Errors the services raise and how the web layer renders them: JSON for APIs, escaped HTML for pages."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template_string, request
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


ERROR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>{{ title }}</h1><p>{{ message }}</p></main></body></html>
"""


def render_error_page(status: int, title: str, message: str):
    """A plain HTML error page; Jinja escapes everything, so input is never reflected raw."""
    return render_template_string(ERROR_PAGE, title=title, message=message), status


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
        page, status = render_error_page(error.code or 500, f"{error.code} {error.name}", error.description or "")
        headers = {"Allow": ", ".join(error.valid_methods)} if error.code == 405 and getattr(error, "valid_methods", None) else {}
        return page, status, headers

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return handle_http_exception(InternalServerError("The server could not complete the request."))
