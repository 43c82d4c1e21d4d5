"""Discovery documents: OpenID Connect Discovery 1.0 section 3 and RFC 8414.

Each feature contributes its own metadata when it is registered, so the documents advertise
exactly what this build implements and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable

from flask import Blueprint, Flask, current_app

from idp.cors import any_origin
from idp.keyring.models import ALGORITHMS
from idp.keyring.views import JWKS_PATH, cacheable
from idp.web.errors import json_errors

bp = json_errors(Blueprint("discovery", __name__))  # protocol endpoints: errors in JSON

MetadataContributor = Callable[[str], dict[str, Any]]


def add_metadata(app: Flask, contributor: MetadataContributor) -> None:
    """Register a function of the issuer URL that returns metadata members to advertise."""
    app.extensions.setdefault("idp.metadata", []).append(contributor)
    app.extensions.pop("idp.metadata_document", None)  # built again, with this member


def metadata() -> dict[str, Any]:
    """The provider metadata, built from the configured issuer (never the Host header)."""
    issuer = current_app.config["ISSUER"]
    document: dict[str, Any] = {
        "issuer": issuer,
        "jwks_uri": issuer + JWKS_PATH,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
    }
    for contributor in current_app.extensions.get("idp.metadata", []):
        document.update(contributor(issuer))
    return document


@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
@any_origin
def discovery_document():
    """OpenID Provider / OAuth 2.0 Authorization Server metadata."""
    # The document depends only on the configuration and what features registered: built once per app.
    document = current_app.extensions.get("idp.metadata_document")
    if document is None:
        body = json.dumps(metadata(), sort_keys=True, separators=(",", ":")).encode()
        document = current_app.extensions["idp.metadata_document"] = (body, hashlib.sha256(body).hexdigest()[:32])
    return cacheable(*document, "application/json", current_app.config["DISCOVERY_MAX_AGE"])
