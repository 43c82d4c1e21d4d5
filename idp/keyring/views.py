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
    response = Response(document.body, mimetype="application/jwk-set+json")
    response.headers["Cache-Control"] = f"public, max-age={current_app.config['JWKS_MAX_AGE']}"
    response.set_etag(document.etag)
    return response.make_conditional(request)
