"""Hostile input stopped at the door: one check before any view, form or query sees a request.

Text the databases cannot store is refused with a 400 wherever it comes in: a NUL byte (PostgreSQL
text cannot hold one; SQLite would store it and truncate it elsewhere) and lone UTF-16 surrogates
(not encodable as UTF-8, so no driver can send them). Route integers are bounded to what an
`INTEGER` column holds, so an out-of-range id is a 404 rather than an overflow in the driver. The
body is read here once, so a malformed one (a broken chunked encoding, a client that hangs up) is
a 400 before any view parses it, never an unhandled error with a traceback; multipart bodies,
which nothing here takes, are refused unparsed.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from flask import Flask, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.routing import IntegerConverter

# The largest value of a signed 32-bit INTEGER, the type of every id in a route.
INTEGER_MAX = 2**31 - 1

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class MalformedRequest(BadRequest):
    """400 `invalid_request` (RFC 6749 5.2), the OAuth name for a request the server cannot take."""

    name = "Invalid Request"


class BoundedIntegerConverter(IntegerConverter):
    """`<int:...>` limited to 0..INTEGER_MAX: a larger number matches no route (404)."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = 0, max: int | None = INTEGER_MAX, signed: bool = False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def is_storable(value: str) -> bool:
    """True if `value` holds neither a NUL byte nor a lone surrogate, so every backend can store it."""
    return _UNSTORABLE.search(value) is None


def _strings(value: Any) -> Iterable[str]:
    """Every string in a decoded JSON document, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _request_text() -> Iterable[str]:
    """Every piece of text a view could read from this request."""
    yield request.path
    for source in (request.args, request.form, request.cookies):
        for key, value in source.items(multi=True):
            yield key
            yield value
    for key, value in request.headers.items():
        yield key
        yield value
    yield from (str(value) for value in (request.view_args or {}).values())
    if request.is_json:
        yield from _strings(_json_document())


def _json_document() -> Any:
    """The body as JSON, or None if it is not JSON at all; nested too deep is malformed."""
    try:
        return json.loads(request.get_data(cache=True))
    except RecursionError:
        raise MalformedRequest("The JSON body is nested too deeply.") from None
    except ValueError:  # not JSON: the view that reads it answers as its protocol says
        return None


def read_body() -> None:
    """Read and keep the body now; an unreadable one is a 400 (RFC 9112 7.1: a bad chunk is a malformed message)."""
    try:
        request.get_data(cache=True, parse_form_data=False)
    except HTTPException:
        raise
    except (ParseException, OSError, ValueError):
        # gunicorn's InvalidChunkSize, ChunkMissingTerminator, ... (ParseException) and NoMoreData
        # (IOError), werkzeug's dechunker (OSError): the client sent a broken message.
        raise MalformedRequest("The request body is malformed.") from None


def refuse_unstorable_input() -> None:
    """Refuse (400) what no view should see: a multipart or unreadable body, text no database can store."""
    if request.mimetype == "multipart/form-data":
        # No page or endpoint takes uploads (RFC 6749 bodies are form-encoded), and werkzeug leaves
        # the spooled file of a truncated part open: refuse multipart before anything parses it.
        raise MalformedRequest("Multipart bodies are not accepted; send application/x-www-form-urlencoded.")
    read_body()
    if not all(is_storable(text) for text in _request_text()):
        raise MalformedRequest("The request contains characters that are not allowed (a NUL byte or invalid text).")


def init_input_guard(app: Flask) -> None:
    """Bound route integers and run the text check first of every before-request function."""
    app.url_map.converters["int"] = BoundedIntegerConverter
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_unstorable_input)
