"""ID tokens handed back to us as hints (`id_token_hint` at logout, and at authorization).

A hint proves only that we issued the token: its signature, `typ`, issuer and subject are checked
like any token of ours, but its expiry is not, because OpenID Connect RP-Initiated Logout 1.0
section 2 says the OP SHOULD accept an expired ID token as a hint. Its age is: a hint is accepted
for IDP_ID_TOKEN_HINT_TTL after it was issued (plus the clock skew), a bound the key rotation's
retirement grace is computed from, so an old ID token picked up anywhere cannot sign a browser
out or pose as a login hint forever. The same strict header rules as for access tokens apply
(alg allow-list, our published keys only, no `jku`/`x5u`/`jwk`/`x5c`), and the `typ` must be
`JWT`, so an access token (`at+jwt`) is never taken for an ID token.
"""

from __future__ import annotations

from flask import current_app

from idp.clock import utcnow
from idp.keyring import jws
from idp.keyring.jws import ID_TOKEN_TYP, InvalidTokenError


def verify_id_token_hint(token: str, *, client_id: str | None = None) -> dict:
    """Claims of an ID token this issuer signed (expired or not), issued to `client_id` when given;
    raise InvalidTokenError otherwise."""
    # RFC 8725 3.11: explicit typing keeps an access token (at+jwt) from passing for an ID token;
    # RP-Initiated Logout 1.0 section 2: an expired ID token is still a hint (its age is checked below).
    claims = jws.verify(token, ID_TOKEN_TYP, check_expiry=False)
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise InvalidTokenError("missing sub")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if not audiences or not all(isinstance(item, str) and item for item in audiences):
        raise InvalidTokenError("missing aud")
    if client_id is not None and client_id not in audiences:
        raise InvalidTokenError("issued to another client")
    if "sid" in claims and not isinstance(claims["sid"], str):
        raise InvalidTokenError("malformed sid")
    config = current_app.config  # `iat` is an integer not in the future: jws.verify checked it
    if utcnow().timestamp() > claims["iat"] + config["ID_TOKEN_HINT_TTL"] + config["CLOCK_SKEW"]:
        raise InvalidTokenError("too old to be a hint")
    return claims


def hinted_client_id(claims: dict) -> str | None:
    """The client an ID token was issued to: its single `aud`, or `azp` when `aud` lists several."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return aud
    azp = claims.get("azp")
    return azp if isinstance(azp, str) and azp in aud else None
