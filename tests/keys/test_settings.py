"""Rotation and job settings: safe defaults derived from the token lifetimes, unsafe values refused."""

import pytest

from idp.config import ConfigError, load


def test_defaults_follow_the_lifetimes_they_protect():
    values = load(environ={"IDP_ID_TOKEN_HINT_TTL": "100", "IDP_ID_TOKEN_TTL": "7200", "IDP_CLOCK_SKEW": "30"})
    assert values["KEY_RETIREMENT_GRACE"] == 7200 + 30  # the longest token lifetime plus skew
    assert values["KEY_ROTATION_LEAD_TIME"] == 3600  # at least an hour
    big_cache = load(environ={"IDP_JWKS_MAX_AGE": "86400"})
    assert big_cache["KEY_ROTATION_LEAD_TIME"] == 86400 + 60 + 5  # JWKS cache + skew + process cache
    assert load(environ={})["ID_TOKEN_HINT_TTL"] == load(environ={})["SSO_SESSION_ABSOLUTE_TTL"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IDP_KEY_ROTATION_LEAD_TIME": "300"}, "IDP_KEY_ROTATION_LEAD_TIME must be at least JWKS_MAX_AGE + CLOCK_SKEW + 5 = 365 seconds"),
        ({"IDP_KEY_RETIREMENT_GRACE": "3600"}, "IDP_KEY_RETIREMENT_GRACE must be at least the longest of ACCESS_TOKEN_TTL, ID_TOKEN_TTL and ID_TOKEN_HINT_TTL plus CLOCK_SKEW = 604860 seconds"),
        ({"IDP_PURGE_BATCH_SIZE": "0"}, "IDP_PURGE_BATCH_SIZE must be at least 1"),
        ({"IDP_AUDIT_RETENTION": "-1"}, "IDP_AUDIT_RETENTION must not be negative"),
        ({"IDP_REFRESH_TOKENS_FOR_CONFIDENTIAL_CLIENTS": "maybe"}, "IDP_REFRESH_TOKENS_FOR_CONFIDENTIAL_CLIENTS='maybe' is not valid"),
        # A test-only switch is no setting: no environment variable turns it on in production.
        ({"IDP_JOB_CLOCK_OVERRIDE": "1"}, "IDP_JOB_CLOCK_OVERRIDE is not a setting (did you mean IDP_CLOCK_SKEW?)"),
        ({"IDP_ISUER": "https://idp.example.com"}, "IDP_ISUER is not a setting (did you mean IDP_ISSUER?)"),
        ({"IDP_ARGON2_TIME_COST": "0"}, "IDP_ARGON2_TIME_COST must be at least 1"),
        ({"IDP_ARGON2_MEMORY_COST": "15", "IDP_ARGON2_PARALLELISM": "2"}, "IDP_ARGON2_MEMORY_COST must be at least 8 KiB per lane (8 x IDP_ARGON2_PARALLELISM)"),
    ],
)
def test_unsafe_values_fail_at_start_up_with_one_line(env, message):
    with pytest.raises(ConfigError) as caught:
        load(environ=env)
    assert str(caught.value) == message


def test_rotation_by_hand_only_and_keeping_audit_forever_are_allowed():
    values = load(environ={"IDP_KEY_ROTATION_PERIOD": "0", "IDP_AUDIT_RETENTION": "0"})
    assert values["KEY_ROTATION_PERIOD"] == 0 and values["AUDIT_RETENTION"] == 0
