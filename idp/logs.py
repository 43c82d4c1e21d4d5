"""Structured logs: one JSON object per line, a request id per request, nothing secret.

Every process (web, worker, beat, CLI) logs through `JsonFormatter`; gunicorn's own logs too
(`GunicornLogger`), whose access log records the path but never the query string, where
/authorize, /logout and callbacks carry codes, states and ID token hints (issue 9). The code never
logs a credential; as a second line of defence the formatter replaces anything shaped like one
(a JWT, an `idp_` token or secret, a `password=`/`code=`/`token=` pair) before it is written.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from datetime import datetime, timezone

from flask import Flask, Response, g, has_request_context, request
from gunicorn.glogging import Logger as BaseGunicornLogger

REQUEST_ID_HEADER = "X-Request-Id"
# An id set by the proxy in front (nginx's $request_id) is kept so both logs share it; anything
# else is replaced, so a client cannot write arbitrary text into the logs.
INCOMING_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,128}")

SECRET_SHAPES = (
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), "[redacted]"),
    (re.compile(r"idp_[a-z]{2}_[A-Za-z0-9_-]+"), "[redacted]"),
    (re.compile(
        r"(?i)\b((?:current_|new_)?password|(?:client_)?secret|(?:access_|refresh_|id_|logout_)?token|id_token_hint"
        r"|code|code_verifier|assertion)\b([\"']?\s*[=:]\s*[\"']?)[^\s&\"',;]+"
    ), r"\1\2[redacted]"),
)


def scrub(text: str) -> str:
    """`text` with anything shaped like a credential replaced."""
    for pattern, replacement in SECRET_SHAPES:
        text = pattern.sub(replacement, text)
    return text


def current_request_id() -> str | None:
    """The id of the request being served, if any."""
    return g.get("request_id") if has_request_context() else None


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": scrub(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            entry["request_id"] = request_id
        if isinstance(getattr(record, "http", None), dict):
            entry["http"] = record.http
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    """JSON lines on stderr at `level` for the process (a no-op where logging is set up already)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])


def init_request_ids(app: Flask) -> None:
    """Give every request an id, echoed in the `X-Request-Id` response header and every log line."""

    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if INCOMING_REQUEST_ID.fullmatch(incoming) else secrets.token_hex(16)

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers[REQUEST_ID_HEADER] = g.request_id
        return response


class GunicornLogger(BaseGunicornLogger):
    """gunicorn's error and access logs as JSON lines; the access log never records a query string."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(JsonFormatter())

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        # The fields gunicorn's `atoms()` would give, read directly: `atoms()` also formats a
        # timestamp, decodes Basic credentials and copies every header and environ key per request.
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        # No query string, no Referer: either may carry a code, a state or an ID token hint.
        http = {
            "client": environ.get("REMOTE_ADDR", "-"), "method": environ.get("REQUEST_METHOD"), "path": environ.get("PATH_INFO"),
            "protocol": environ.get("SERVER_PROTOCOL"), "status": int(status), "bytes": getattr(resp, "sent", None),
            "duration_ms": request_time.seconds * 1000 + request_time.microseconds // 1000,
            "user_agent": environ.get("HTTP_USER_AGENT", "-"),
        }
        request_id = None
        for name, value in resp.headers:  # the last one, as `atoms()` has it
            if name.lower() == "x-request-id":
                request_id = value
        self.access_log.info("%s %s %s", http["method"], http["path"], http["status"], extra={"http": http, "request_id": request_id})
