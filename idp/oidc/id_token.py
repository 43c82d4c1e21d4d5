"""ID tokens (OpenID Connect Core 1.0 section 2): signed with the keyring, read back as hints.

An ID token carries who signed in and how (`sub`, `auth_time`, `sid`, `acr`, `amr`), for one
client (`aud`), and by default the claims of the granted profile and email scopes as well
(`user_claims`, chosen per client by idp/oidc/claims.py `id_token_claims`; Core 2 and 5.4).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from authlib.oidc.core.util import create_half_hash
from flask import current_app

from idp.clients.models import Client
from idp.clock import utcnow
from idp.keyring import jws
from idp.keyring.jws import ID_TOKEN_TYP


def issue_id_token(
    *,
    client: Client,
    subject: str,
    auth_time: datetime | None = None,
    nonce: str | None = None,
    sid: str | None = None,
    acr: str | None = None,
    amr: list[str] | tuple[str, ...] = (),
    access_token: str | None = None,
    user_claims: dict | None = None,
    now: datetime | None = None,
) -> str:
    """Sign an ID token for `client` with the active key of the algorithm it registered (RS256 by default)."""
    now = now or utcnow()
    alg = client.id_token_signed_response_alg or "RS256"
    claims = {
        **(user_claims or {}),
        "iss": current_app.config["ISSUER"],
        "sub": subject,
        "aud": client.client_id,
        "exp": int((now + timedelta(seconds=current_app.config["ID_TOKEN_TTL"])).timestamp()),
        "iat": int(now.timestamp()),
    }
    if auth_time is not None:
        claims["auth_time"] = int(auth_time.timestamp())
    if nonce:
        claims["nonce"] = nonce
    if sid:
        claims["sid"] = sid
    if acr:
        claims["acr"] = acr
    if amr:
        claims["amr"] = list(amr)
    if access_token:
        # Core 3.1.3.6: the left half of the access token's hash under the ID token's algorithm.
        claims["at_hash"] = create_half_hash(access_token, alg).decode()
    return jws.sign(claims, ID_TOKEN_TYP, alg)
