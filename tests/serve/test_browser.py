"""The web page in a real browser: Debian's Chromium driven by Playwright (never a downloaded
browser) against a live server on the sketch stand-in. A chat session: send an idea, see the rut
verdict and the grids, press vary, reload, continue the same session from `zit chat`; generation
with live progress; an idea that is HTML renders as text.

Screenshots go to the test's folder, and to `$ZIT_SCREENSHOTS` when it is set (docs/ keeps the ones
in docs/serve.md: `ZIT_SCREENSHOTS=docs pytest tests/serve/test_browser.py`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.cli_helpers import run_zit
from tests.serve.conftest import IDEA

pytestmark = pytest.mark.slow  # starts a browser
CHROMIUM = next(
    (p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).exists()),
    None,
)
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if CHROMIUM is None:
        pytest.skip("no Chromium at /usr/bin/chromium: apt-get install -y chromium")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def browser_page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.problems = []  # console errors, page errors and dialogs: none expected
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda err: page.problems.append(str(err)))
    page.on("dialog", lambda d: (page.problems.append(f"dialog: {d.message}"), d.dismiss()))
    try:
        yield page
    finally:
        context.close()


def screenshot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=name != "serve-xss.png")
    if os.environ.get("ZIT_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["ZIT_SCREENSHOTS"]) / name)


def start_session(page, url: str, name: str, idea: str, count: int) -> None:
    page.goto(f"{url}/")
    form = page.locator("#new-session")
    form.locator("[name=name]").fill(name)
    form.locator("[name=idea]").fill(idea)
    form.locator("[name=count]").fill(str(count))
    form.locator("[name=size]").fill("128x128")
    form.locator("[name=seed]").fill("1")
    form.locator("button[type=submit]").click()
    page.wait_for_url(f"**/sessions/{name}", timeout=60_000)


def all_images_loaded(page) -> bool:
    return page.evaluate(
        "[...document.images].length > 0 && [...document.images].every(i => i.complete && i.naturalWidth > 0)"
    )


def test_a_chat_session_in_the_browser(browser_page, live, tmp_path, capsys):
    page = browser_page
    start_session(page, live.url, "cafe", IDEA, 4)

    attempts = page.locator("#turn-1 .attempt")
    assert attempts.count() >= 2
    verdicts = page.locator("#turn-1 .attempt h4 .verdict").all_text_contents()
    assert verdicts[0] == "rut" and verdicts[-1] == "ok"  # found, then escaped
    assert "mean similarity" in attempts.first.text_content()
    assert "vary" in page.locator("#turn-1 .levers").first.text_content()
    assert page.locator("#turn-1 .attempt").first.locator(".grid img").count() == 4
    assert all_images_loaded(page)
    screenshot(page, tmp_path, "serve-chat.png")

    page.locator("button[data-command='/vary']").click()
    page.wait_for_selector("#turn-2", timeout=60_000)  # the page reloads when the turn is done
    assert page.locator("#turn-2 .message").text_content() == "/vary"
    assert "vary" in page.locator("#turn-2 .levers").first.text_content()

    page.reload()
    assert page.locator(".turn").count() == 2  # the session is the server's, not the page's

    code, _, err = run_zit(
        capsys, "chat", "--session", "cafe", "--message", "at night, in the rain"
    )
    assert code == 0, err
    page.reload()
    assert page.locator("#turn-3 .message").text_content() == "at night, in the rain"
    assert all_images_loaded(page)
    assert page.problems == []


def test_generation_shows_live_progress_and_the_images(browser_page, live, tmp_path):
    page = browser_page
    page.goto(f"{live.url}/generate")
    form = page.locator("#generate")
    form.locator("[name=idea]").fill(IDEA)
    form.locator("[name=size]").fill("128x128")
    form.locator("[name=seed]").fill("2")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#result figure", timeout=60_000)
    steps = page.locator("#progress li").all_text_contents()
    assert any(s.startswith("judge attempt 1: rut") for s in steps)
    assert any(s.startswith("escape") for s in steps) and any(s.startswith("done") for s in steps)
    assert page.locator("#result figure").count() == 4
    assert page.locator("#outcome").text_content().startswith("ok: escaped the rut")
    assert all_images_loaded(page)
    screenshot(page, tmp_path, "serve-generate.png")
    assert page.problems == []


def test_an_idea_that_is_html_renders_as_text(browser_page, live, tmp_path):
    page = browser_page
    start_session(page, live.url, "xss", XSS, 2)
    assert page.locator("#idea").text_content() == XSS
    assert page.locator("#turn-1 .message").text_content() == XSS
    assert page.locator("#session-list").text_content().count(XSS) == 1
    assert page.evaluate("document.querySelectorAll('main script, main img[src=x]').length") == 0
    screenshot(page, tmp_path, "serve-xss.png")
    assert page.problems == []  # no alert() ran


def provenance(live, image_url: str) -> dict:
    import httpx

    image_id = image_url.rsplit("/", 1)[-1].removesuffix(".png")
    return httpx.get(f"{live.url}/api/images/{image_id}").json()["provenance"]


def test_vary_use_as_start_and_repaint_under_the_images(browser_page, live, tmp_path):
    page = browser_page
    start_session(page, live.url, "refine", IDEA, 2)
    latest = page.locator("#turn-1 .attempt").last.locator("figure")
    second = latest.nth(1).locator("img").get_attribute("src")
    assert latest.first.locator(".tools button").all_text_contents() == [
        "Vary subtle", "Vary strong", "Use as start", "Repaint",
    ]  # fmt: skip

    latest.nth(1).get_by_role("button", name="Vary subtle").click()
    page.wait_for_selector("#turn-2 .attempt figure", timeout=60_000)
    assert page.locator("#turn-2 .message").text_content() == "/vary subtle 2"
    varied = page.locator("#turn-2 .attempt").last.locator("figure img").first.get_attribute("src")
    record = provenance(live, varied)
    assert record["init"]["sha256"] == second.rsplit("/", 1)[-1].removesuffix(".png")
    assert record["init"]["strength"] == 0.3

    page.locator("#turn-2 .attempt").last.locator("figure").first.get_by_role(
        "button", name="Use as start"
    ).click()
    page.wait_for_selector("#turn-3", timeout=60_000)
    assert page.locator("#turn-3 .message").text_content() == "/pick 1"

    figure = page.locator("#turn-2 .attempt").last.locator("figure").first
    figure.get_by_role("button", name="Repaint").click()
    canvas = figure.locator(".repaint canvas")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.5, steps=8)
    page.mouse.up()
    figure.locator(".repaint [name=idea]").fill("a red umbrella")
    figure.locator(".repaint button[type=submit]").click()
    page.wait_for_selector("figure figcaption:has-text('repainted')", timeout=60_000)
    repainted = page.locator("figure:has(figcaption:has-text('repainted')) img").first
    record = provenance(live, repainted.get_attribute("src"))
    assert 0 < record["init"]["mask_share"] < 0.5 and record["strength"] == 1.0
    assert "a red umbrella" in (record.get("prompt"), record.get("idea"))
    screenshot(page, tmp_path, "serve-refine.png")
    assert page.problems == []
