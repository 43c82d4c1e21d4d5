"""The page check itself (tests/pages.py) can fail: axe-core, run with only the rules that can
report a serious or critical violation, still reports such violations, and a sideways scroll fails too."""

from __future__ import annotations

import pytest

from tests.pages import assert_good_page, axe_violations

pytestmark = [pytest.mark.browser]

# A critical violation (image-alt), a serious one (color-contrast), and a moderate one (region: content
# outside any landmark) that does not fail the check.
FLAWED = """<!doctype html><html lang="en"><title>Flawed</title><body>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" width="20" height="20">
<p style="color: #bbb; background: #fff">Pale grey on white</p></body></html>"""
TOO_WIDE = """<!doctype html><html lang="en"><title>Too wide</title><body><main><h1>Wide</h1>
<div style="width: 600px">A fixed-width box</div></main></body></html>"""


def test_serious_and_critical_violations_are_reported_and_fail_the_page(new_page):
    page = new_page()
    page.set_content(FLAWED)
    assert {(violation["id"], violation["impact"]) for violation in axe_violations(page)} == {
        ("image-alt", "critical"), ("color-contrast", "serious")}
    with pytest.raises(AssertionError, match="image-alt"):
        assert_good_page(page, "test-axe-flawed")


def test_a_sideways_scroll_on_a_phone_fails_the_page(new_page):
    page = new_page()
    page.set_content(TOO_WIDE)
    with pytest.raises(AssertionError, match="phone: the document is 6[0-9]{2} px wide in a 390 px viewport"):
        assert_good_page(page, "test-axe-too-wide")
    assert page.viewport_size == {"width": 1280, "height": 900}  # put back as it was
