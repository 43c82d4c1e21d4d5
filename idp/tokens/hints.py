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
from idp.tokens.access import InvalidTokenError, verify_signed_jwt

ID_TOKEN_TYP = "JWT"


def verify_id_token_hint(token: str, *, client_id: str | None = None) -> dict:
    """Claims of an ID token this issuer signed (expired or not), issued to `client_id` when given;
    raise InvalidTokenError otherwise."""
    header, claims = verify_signed_jwt(token)
    # RFC 8725 3.11: explicit typing keeps an access token (at+jwt) from passing for an ID token.
    if str(header.get("typ", "")).upper() != ID_TOKEN_TYP:
        raise InvalidTokenError("not an ID token")
    if claims.get("iss") != current_app.config["ISSUER"]:
        raise InvalidTokenError("wrong issuer")
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
    _check_age(claims.get("iat"))
    return claims


def _check_age(iat) -> None:
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise InvalidTokenError("missing iat")
    config, now = current_app.config, utcnow().timestamp()
    if iat > now + config["CLOCK_SKEW"]:
        raise InvalidTokenError("issued in the future")
    if now > iat + config["ID_TOKEN_HINT_TTL"] + config["CLOCK_SKEW"]:
        raise InvalidTokenError("too old to be a hint")


def hinted_client_id(claims: dict) -> str | None:
    """The client an ID token was issued to: its single `aud`, or `azp` when `aud` lists several."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return aud
    azp = claims.get("azp")
    return azp if isinstance(azp, str) and azp in aud else None
