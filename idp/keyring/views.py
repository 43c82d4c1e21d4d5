"""The JWKS endpoint."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from idp.cors import any_origin
from idp.keyring.service import jwks
from idp.web.errors import json_errors

bp = json_errors(Blueprint("keyring", __name__))  # protocol endpoints: errors in JSON

JWKS_PATH = "/.well-known/jwks.json"


@bp.get(JWKS_PATH)
@any_origin
def jwks_document():
    """The published signing keys (RFC 7517 5), cacheable, with an ETag for conditional GETs."""
    document = jwks()
    return cacheable(document.body, document.etag, "application/jwk-set+json", current_app.config["JWKS_MAX_AGE"])


def cacheable(body: bytes, etag: str, mimetype: str, max_age: int) -> Response:
    """`body` with its strong ETag and Cache-Control, or 304 when If-None-Match names that ETag.

    RFC 9110 13.1.2: If-None-Match uses the weak comparison, so W/"etag" matches too. The bytes
    and their ETag are computed once per keyring snapshot (or per app), never per request.
    """
    headers = {"Cache-Control": f"public, max-age={max_age}", "ETag": f'"{etag}"'}
    if request.if_none_match.contains_weak(etag):
        return Response(status=304, headers=headers)
    return Response(body, mimetype=mimetype, headers=headers)
