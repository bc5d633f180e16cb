"""report.html in a real headless browser (Chromium): it loads without console errors and every
inline image decodes (the page's own check sets `data-images` and logs an error otherwise)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")

pytestmark = pytest.mark.slow  # starts processes or builds models


def find_browser() -> str | None:
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def load_in_browser(browser: str, page) -> tuple[str, list[str]]:
    """The page's DOM after load, and the console messages it logged."""
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, console


def test_report_opens_in_a_headless_browser_without_errors(smoke_run):
    browser = find_browser()
    if browser is None:
        pytest.skip(
            "no Chromium found (looked for chromium, chromium-browser, google-chrome, chrome): "
            "install one, e.g. `apt-get install -y chromium`"
        )
    page = smoke_run / "report.html"
    dom, console = load_in_browser(browser, page)
    assert console == [], console
    inline = len(re.findall(r"<img ", page.read_text()))
    assert f'data-images="{inline}"' in dom, "some inline images did not decode"
    assert "Configurations" in dom and "Contact sheets" in dom


def test_the_browser_check_sees_a_broken_image(tmp_path):
    """The check above can fail: a page with an undecodable image logs a console error."""
    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium found: install one, e.g. `apt-get install -y chromium`")
    from zit_agent.evals.report import PAGE_JS

    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><body><img src='data:image/png;base64,AAAA'>"
        f"<script>{PAGE_JS}</script></body></html>"
    )
    dom, console = load_in_browser(browser, page)
    assert any("failed to decode" in line for line in console), console
    assert 'data-images="0"' in dom
