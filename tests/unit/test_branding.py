"""Branding settings (IDP_BRAND_*): validated at start-up, and the colours the pages derive from them."""

import pytest

from idp.branding import contrast, image_sources, link_color, text_on, theme_css
from idp.config import ConfigError, load


def test_defaults_are_valid_and_readable():
    values = load({}, environ={})
    assert values["BRAND_NAME"] == "idp" and values["BRAND_LOGO_URL"] == "" and values["BRAND_COLOR"] == "#0b5cad"
    assert contrast(values["BRAND_COLOR"], text_on(values["BRAND_COLOR"])) >= 4.5


@pytest.mark.parametrize("variable, value", [
    ("IDP_BRAND_COLOR", "red"), ("IDP_BRAND_COLOR", "#12345"), ("IDP_BRAND_COLOR", "#1234567"), ("IDP_BRAND_COLOR", "#gggggg"),
    ("IDP_BRAND_COLOR", "#123456; background: url(x)"),
    ("IDP_BRAND_LOGO_URL", "http://cdn.example.com/logo.svg"), ("IDP_BRAND_LOGO_URL", "javascript:alert(1)"),
    ("IDP_BRAND_LOGO_URL", "//evil.example.com/logo.svg"), ("IDP_BRAND_LOGO_URL", "logo.svg"),
    ("IDP_BRAND_LOGO_URL", '/logo.svg" onerror="alert(1)'), ("IDP_BRAND_LOGO_URL", "https://cdn.example.com/a.svg; script-src *"),
    ("IDP_BRAND_NAME", ""), ("IDP_BRAND_NAME", "x" * 65), ("IDP_BRAND_NAME", "two\nlines"),
])
def test_bad_branding_fails_at_start_up(variable, value):
    with pytest.raises(ConfigError, match=variable):
        load({}, environ={variable: value})


def test_good_branding_is_taken():
    values = load({}, environ={"IDP_BRAND_NAME": " Acme ID ", "IDP_BRAND_COLOR": "#FFCC00", "IDP_BRAND_LOGO_URL": "https://cdn.example.com/acme.svg"})
    assert (values["BRAND_NAME"], values["BRAND_COLOR"], values["BRAND_LOGO_URL"]) == ("Acme ID", "#ffcc00", "https://cdn.example.com/acme.svg")
    assert load({}, environ={"IDP_BRAND_LOGO_URL": "/brand/logo.svg"})["BRAND_LOGO_URL"] == "/brand/logo.svg"


def test_text_on_the_brand_colour_and_links_stay_readable():
    assert round(contrast("#ffffff", "#000000"), 1) == 21.0
    assert text_on("#ffcc00") == "#000000" and text_on("#0b5cad") == "#ffffff"
    # A light brand colour is kept for buttons but not used for links on white, which would be unreadable.
    assert link_color("#ffcc00") == "#1b1f24" and link_color("#0b5cad") == "#0b5cad"
    css = theme_css({"BRAND_COLOR": "#ffcc00"})
    assert "--brand: #ffcc00" in css and "--brand-text: #000000" in css and "--accent: #1b1f24" in css


def test_the_logo_origin_joins_the_image_sources_only_for_an_https_logo():
    assert image_sources({"BRAND_LOGO_URL": ""}) == "'self'"
    assert image_sources({"BRAND_LOGO_URL": "/brand/logo.svg"}) == "'self'"
    assert image_sources({"BRAND_LOGO_URL": "https://cdn.example.com:8443/logo.svg"}) == "'self' https://cdn.example.com:8443"
