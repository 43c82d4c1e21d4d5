"""Request-parameter rules in one place (the shape of node-oidc-provider's `reject_dupes`).

Each endpoint declares which of its parameters may appear only once and how long a value may be;
`enforce` refuses the first broken rule with `invalid_request`:

- RFC 6749 3.1 and 3.2: authorization and token request parameters MUST NOT be included more
  than once; RFC 7009 2.1 and RFC 7662 2.1 inherit this; RP-Initiated Logout 1.0 section 2 too.
- Lengths: a cap per value, so one oversized parameter cannot fill the pending-request store or a
  log line (the authorization request is kept server-side while the user signs in).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from authlib.oauth2.rfc6749 import InvalidRequestError

EVERY = None  # `once=EVERY`: no parameter of the request may repeat


@dataclass(frozen=True)
class ParameterRule:
    """Which parameters may appear at most once, and which are capped at `max_length` (`EVERY` for all)."""

    once: tuple[str, ...] | None
    max_length: int | None = None
    capped: tuple[str, ...] | None = EVERY

    def violation(self, params: Mapping[str, Iterable[str]]) -> str | None:
        """What the request breaks, as an error description, or None when it follows the rule."""
        lists = {name: list(values) for name, values in params.items()}
        for name in lists if self.once is EVERY else self.once:
            if len(lists.get(name, ())) > 1:
                return f"'{name}' is repeated"
        if self.max_length is not None:
            for name in lists if self.capped is EVERY else self.capped:
                if any(len(value) > self.max_length for value in lists.get(name, ())):
                    return f"'{name}' is too long"
        return None

    def enforce(self, params: Mapping[str, Iterable[str]]) -> None:
        """Raise `invalid_request` naming the first repeated or oversized parameter."""
        problem = self.violation(params)
        if problem:
            raise InvalidRequestError(problem)


def multi(values) -> dict[str, list[str]]:
    """A werkzeug MultiDict (request.form, request.values) as name -> every value sent."""
    return {name: values.getlist(name) for name in values}


# --- the rules, one per endpoint --------------------------------------------------------------------

# OAuth and OpenID parameters of the authorization request (RFC 6749 3.1); Authlib itself refuses
# a repeated response_type, client_id, redirect_uri, scope or state. Every value is capped.
AUTHORIZATION_SINGLE_VALUED = (
    "nonce", "prompt", "max_age", "login_hint", "id_token_hint", "code_challenge",
    "code_challenge_method", "response_mode", "acr_values", "ui_locales", "display", "claims",
)
MAX_PARAMETER_LENGTH = 4096
AUTHORIZATION = ParameterRule(once=AUTHORIZATION_SINGLE_VALUED, max_length=MAX_PARAMETER_LENGTH)

# RFC 6749 3.2: no token request parameter may repeat.
TOKEN = ParameterRule(once=EVERY)

# RFC 7009 2.1 / RFC 7662 2.1 (the `token` itself is checked for exactly one non-empty value first).
PRESENTED_TOKEN = ParameterRule(once=("token_type_hint", "client_id", "client_secret"))

# RP-Initiated Logout 1.0 section 2; an id_token_hint carrying profile claims is longer than 4096.
LOGOUT_PARAMS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "logout_hint", "ui_locales")
LOGOUT = ParameterRule(once=LOGOUT_PARAMS, max_length=8192, capped=LOGOUT_PARAMS)
