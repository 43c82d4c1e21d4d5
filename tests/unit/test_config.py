"""Configuration: defaults, environment mapping, and fail-fast validation."""

import pytest

from idp.config import SETTINGS, ConfigError, load


def test_embedded_defaults_need_no_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    values = load(environ={})
    assert values["ISSUER"] == "http://localhost:8000"
    assert values["DATABASE_URL"] == f"sqlite:///{tmp_path}/instance/idp.sqlite3"
    assert values["CELERY_BROKER_URL"].startswith("sqla+sqlite:///")
    assert values["KEYS_DIR"] == str(tmp_path / "keys")


def test_environment_overrides_defaults_and_mapping_overrides_environment():
    environ = {"IDP_ISSUER": "https://id.example.com/", "IDP_ACCESS_TOKEN_TTL": "120"}
    values = load(environ=environ)
    assert values["ISSUER"] == "https://id.example.com"
    assert values["ACCESS_TOKEN_TTL"] == 120
    assert load({"ACCESS_TOKEN_TTL": 60}, environ=environ)["ACCESS_TOKEN_TTL"] == 60


def test_postgres_urls_go_through_psycopg3():
    assert load(environ={"IDP_DATABASE_URL": "postgresql://u@h/db"})["DATABASE_URL"] == "postgresql+psycopg://u@h/db"
    assert load(environ={"IDP_DATABASE_URL": "postgres://u@h/db"})["DATABASE_URL"] == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IDP_ISSUER": "id.example.com"}, "not an absolute http(s) URL"),
        ({"IDP_ISSUER": "/relative"}, "not an absolute http(s) URL"),
        ({"IDP_ISSUER": "http://id.example.com"}, "http on a non-loopback host"),
        ({"IDP_ISSUER": "https://id.example.com/?a=b"}, "query or fragment"),
        ({"IDP_DATABASE_URL": "mysql://u@h/db"}, "unknown scheme 'mysql'"),
        ({"IDP_DATABASE_URL": "nonsense"}, "unknown scheme"),
        ({"IDP_ACCESS_TOKEN_TTL": "five"}, "IDP_ACCESS_TOKEN_TTL='five' is not valid"),
        ({"IDP_AUTHORIZATION_CODE_TTL": "601"}, "between 1 and 600"),
        ({"IDP_KEY_ENCRYPTION_KEYS": "not-a-key"}, "not a Fernet key"),
        ({"IDP_LOG_LEVEL": "LOUD"}, "not a logging level"),
        ({"IDP_DATABASE_CONNECT_TIMEOUT": "1"}, "at least 2 seconds"),
        ({"IDP_DATABASE_STATEMENT_TIMEOUT": "-1"}, "must not be negative"),
        ({"IDP_LOGIN_THROTTLE_PER_IP": "0"}, "IDP_LOGIN_THROTTLE_PER_IP must be at least 1"),
        ({"IDP_MFA_POLICY": "sometimes"}, "IDP_MFA_POLICY='sometimes' must be optional or required"),
        ({"IDP_WEBAUTHN_CHALLENGE_TTL": "0"}, "IDP_WEBAUTHN_CHALLENGE_TTL must be at least 1 second"),
        ({"IDP_LOGIN_THROTTLE_BACKOFF_BASE": "60", "IDP_LOGIN_THROTTLE_BACKOFF_CAP": "30"}, "CAP must be at least IDP_LOGIN_THROTTLE_BACKOFF_BASE"),
    ],
)
def test_bad_values_fail_with_one_line(env, message):
    with pytest.raises(ConfigError) as caught:
        load(environ=env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("issuer", ["http://localhost:8000", "http://127.0.0.1:5000", "http://[::1]:8080", "https://login.example.com/tenant"])
def test_loopback_http_and_any_https_issuers_are_accepted(issuer):
    assert load(environ={"IDP_ISSUER": issuer})["ISSUER"] == issuer


def test_every_setting_is_documented_once():
    names = [setting.name for setting in SETTINGS]
    assert len(names) == len(set(names))
    assert all(setting.doc and setting.env.startswith("IDP_") for setting in SETTINGS)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IDP_MAX_CONTENT_LENGTH": "10"}, "IDP_MAX_CONTENT_LENGTH must be at least 1024 bytes"),
        ({"IDP_KEYRING_CACHE_SECONDS": "-1"}, "IDP_KEYRING_CACHE_SECONDS must not be negative"),
        ({"IDP_DISCOVERY_MAX_AGE": "soon"}, "IDP_DISCOVERY_MAX_AGE='soon' is not valid"),
        ({"FORWARDED_ALLOW_IPS": "*"}, "FORWARDED_ALLOW_IPS is not read: set IDP_TRUSTED_PROXIES instead"),
    ],
)
def test_settings_once_outside_the_table_are_checked_like_every_other(env, message):
    with pytest.raises(ConfigError) as caught:
        load(environ=env)
    assert str(caught.value) == message


def test_the_keyring_cache_lifetime_widens_the_minimum_lead_time():
    assert load(environ={})["KEY_ROTATION_LEAD_TIME"] == 3600
    with pytest.raises(ConfigError) as caught:
        load(environ={"IDP_KEYRING_CACHE_SECONDS": "30", "IDP_KEY_ROTATION_LEAD_TIME": "389"})
    assert "JWKS_MAX_AGE + CLOCK_SKEW + 30 = 390 seconds" in str(caught.value)


def test_csrf_tokens_last_as_long_as_an_idle_session_unless_set():
    assert load(environ={"IDP_SSO_SESSION_IDLE_TTL": "600"})["CSRF_TOKEN_TTL"] == 600
    assert load(environ={"IDP_CSRF_TOKEN_TTL": "120"})["CSRF_TOKEN_TTL"] == 120
