"""`assert_good_page(page, name)`: the one check every browser test runs on every page it shows.

It runs axe-core (the npm package pinned by tests/browser/package-lock.json, installed by `npm ci`
from the Makefile's test target) in the page and fails on any serious or critical violation (of
every rule that can report one: see RUN_AXE); checks
that nothing scrolls sideways at a 390 px phone width and at a 1280 px desktop width; and saves a
full-page screenshot at both widths into $IDP_TEST_SCREENSHOTS (default tests/output/screenshots,
git-ignored) as NAME-desktop.png and NAME-phone.png.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

from tests.conftest import require_service

AXE = Path(__file__).resolve().parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(os.environ.get("IDP_TEST_SCREENSHOTS") or Path(__file__).resolve().parent / "output" / "screenshots")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
FAILING_IMPACTS = ("serious", "critical")


@functools.cache
def _axe_source() -> str:
    """axe.min.js (half a megabyte), read once per test process rather than once per page."""
    require_service("axe-core", AXE.exists(), f"run `npm ci` in {AXE.parents[2]}, or `make axe`")
    return AXE.read_text() + "\n;undefined"


def _load_axe(page) -> None:
    # Through DevTools, not a <script> tag: the pages' CSP (script-src 'self') rightly refuses inline
    # script, and the test must not loosen the CSP it also checks.
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_source())


# Every rule axe runs by default, except those that cannot report a serious or critical violation:
# a violation's impact is the highest of its failing checks' impacts, or the rule's own impact where
# it has one (axe-core's aggregateNodeResults and finalizeRuleResult), so a rule whose checks and
# own impact are all minor or moderate never fails the assertion, and running it is waste (a quarter
# of the rules, `region` among the costlier). Where axe's rule list cannot be read, every rule runs.
RUN_AXE = """async (failing) => {
  const rules = (axe._audit && axe._audit.rules) || [];
  const canFail = (rule) => failing.includes(rule.impact) || [...rule.any, ...rule.all, ...rule.none]
      .some((check) => failing.includes((axe._audit.checks[check.id || check] || {impact: failing[0]}).impact));
  const skipped = Object.fromEntries(rules.filter((rule) => !canFail(rule)).map((rule) => [rule.id, {enabled: false}]));
  // Only the violations come back: the passes and the rules that did not apply are of no use here.
  return (await axe.run(document, {resultTypes: ['violations'], rules: skipped})).violations;
}"""


def axe_violations(page) -> list[dict]:
    """The serious and critical axe-core violations of the page as it is now."""
    _load_axe(page)
    violations = page.evaluate(RUN_AXE, list(FAILING_IMPACTS))
    return [
        {"id": violation["id"], "impact": violation["impact"], "help": violation["help"],
         "nodes": [node["target"] for node in violation["nodes"]][:5]}
        for violation in violations if violation["impact"] in FAILING_IMPACTS
    ]


def document_width(page) -> int:
    """How wide the document is laid out (wider than the viewport = a sideways scroll)."""
    return page.evaluate("document.documentElement.scrollWidth")


# The elements that stick out past the viewport (ignoring those inside a box that scrolls or clips them).
WIDEST = """(limit) => [...document.querySelectorAll('body *')]
  .filter((element) => element.getBoundingClientRect().right > limit + 0.5)
  .filter((element) => { for (let up = element.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== 'visible') return false; } return true; })
  .sort((a, b) => b.getBoundingClientRect().right - a.getBoundingClientRect().right)
  .map((element) => element.tagName.toLowerCase() + (element.id ? '#' + element.id : '') +
       (element.className && typeof element.className === 'string' ? '.' + element.className.trim().split(/\\s+/).join('.') : '') +
       ' (' + Math.round(element.getBoundingClientRect().right) + ' px)')
  .slice(0, 5)"""


def _file_name(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


def assert_good_page(page, name: str) -> None:
    """Fail on serious/critical axe violations or a sideways scroll at 1280 and 390 px; screenshot both."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    problems = []
    try:
        # The phone first: a page opened at the desktop size (every opener's default) then ends
        # where it was, without a third resize.
        for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
            if page.viewport_size != size:
                page.set_viewport_size(size)
                # Measured once the page's window has the new width (reading the layout lays it out anew).
                page.wait_for_function("(width) => window.innerWidth === width", arg=size["width"])
            width = document_width(page)
            if width > size["width"]:
                problems.append(f"{label}: the document is {width} px wide in a {size['width']} px viewport; "
                                f"sticking out: {page.evaluate(WIDEST, size['width'])}")
            violations = axe_violations(page)
            if violations:
                problems.append(f"{label}: axe-core: {json.dumps(violations, indent=1)}")
            page.screenshot(path=str(SCREENSHOTS / f"{_file_name(name)}-{label}.png"), full_page=True)
    finally:
        if before and page.viewport_size != before:
            page.set_viewport_size(before)
    assert not problems, f"{name} ({page.url}):\n" + "\n".join(problems)
