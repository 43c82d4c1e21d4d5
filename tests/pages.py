"""Page checks every browser test runs (a stand-in: the design branch brings the full one with axe-core)."""

from __future__ import annotations

from pathlib import Path

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
PHONE_WIDTH = 390


def assert_good_page(page, name: str) -> None:
    """No horizontal scroll at a 390 px wide viewport, and a full-page screenshot saved as `name`."""
    size = page.viewport_size
    page.set_viewport_size({"width": PHONE_WIDTH, "height": 844})
    try:
        widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"{name}: the page scrolls sideways at {PHONE_WIDTH} px ({widths[0]} > {widths[1]})"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    finally:
        if size:
            page.set_viewport_size(size)
