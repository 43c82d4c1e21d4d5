"""The mail and sign-up settings are checked at start-up; a bad SMTP URL never echoes its password."""

from __future__ import annotations

import pytest

from idp.config import ConfigError, load


def test_smtp_urls():
    assert load({"SMTP_URL": "smtps://user:pass@mail.example.com:465"}, environ={})["SMTP_URL"] == "smtps://user:pass@mail.example.com:465"
    assert load({}, environ={})["SMTP_URL"] is None  # the development mail folder
    for bad in ("http://mail.example.com", "smtp://", "smtp://user:hunter2@mail.example.com:port"):
        with pytest.raises(ConfigError, match="IDP_SMTP_URL") as refused:
            load({"SMTP_URL": bad}, environ={})
        assert "hunter2" not in str(refused.value)


def test_signup_policy_and_lifetimes():
    assert load({}, environ={})["SIGNUP"] == "off"
    assert load({"SIGNUP": " Example.com, example.org "}, environ={})["SIGNUP"] == "example.com,example.org"
    for bad in ("sometimes", "user@example.com", "localhost"):
        with pytest.raises(ConfigError, match="IDP_SIGNUP"):
            load({"SIGNUP": bad}, environ={})
    with pytest.raises(ConfigError, match="IDP_PASSWORD_RESET_TTL"):
        load({"PASSWORD_RESET_TTL": 0}, environ={})
    with pytest.raises(ConfigError, match="IDP_MAIL_FROM"):
        load({"MAIL_FROM": "nobody"}, environ={})
    assert load({"ISSUER": "https://id.example.com"}, environ={})["MAIL_FROM"] == "no-reply@id.example.com"
