"""ID tokens (OpenID Connect Core 1.0 section 2): signed with the keyring, read back as hints.

An ID token carries who signed in and how (`sub`, `auth_time`, `sid`, `acr`, `amr`), for one
client (`aud`). Claims of the profile and email scopes are not put in it: the code flow always
issues an access token too, and then those claims come from userinfo (Core 5.4).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from authlib.oidc.core.util import create_half_hash
from flask import current_app
from jwcrypto import jwt

from idp.clients.models import Client
from idp.clock import utcnow
from idp.keyring.service import signing_key
from idp.tokens.access import InvalidTokenError, is_access_token_header, verify_signed_jwt

ID_TOKEN_TYP = "JWT"


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
    now: datetime | None = None,
) -> str:
    """Sign an ID token for `client` with the active key of the algorithm it registered (RS256 by default)."""
    now = now or utcnow()
    alg = client.id_token_signed_response_alg or "RS256"
    claims = {
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
    kid, key = signing_key(alg)
    token = jwt.JWT(header={"alg": alg, "kid": kid, "typ": ID_TOKEN_TYP}, claims=claims)
    token.make_signed_token(key)
    return token.serialize()


def decode_id_token_hint(token: str, *, client_id: str | None = None) -> dict:
    """Claims of an ID token this issuer signed, given back as `id_token_hint`; raise InvalidTokenError otherwise.

    An expired ID token is still a good hint (Core 3.1.2.1, RP-Initiated Logout 2): only the
    signature, the issuer, the audience (when `client_id` is given) and the subject are checked.
    An access token is never accepted in its place.
    """
    header, claims = verify_signed_jwt(token)
    if is_access_token_header(header):
        raise InvalidTokenError("an access token is not an ID token")
    if claims.get("iss") != current_app.config["ISSUER"]:
        raise InvalidTokenError("wrong issuer")
    if not isinstance(claims.get("sub"), str):
        raise InvalidTokenError("missing sub")
    if client_id is not None:
        aud = claims.get("aud")
        if client_id not in (aud if isinstance(aud, list) else [aud]):
            raise InvalidTokenError("issued to another client")
    return claims
