"""The chat page in headless Chromium: send, watch it stream, stop, follow up, screenshot.

Needs Debian's chromium (make setup-browser) and the playwright package; skipped without them.
"""

import json
from pathlib import Path

import pytest
from serve_helpers import make_run_dir, serve, wait_idle

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-quic"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")]


@pytest.fixture(scope="module")
def page_server(tmp_path_factory):
    # No end-of-text token and a plain template: an answer runs until stopped or max tokens.
    run = make_run_dir(tmp_path_factory.mktemp("page") / "run", context_length=4096, specials=())
    live = serve(run, template="plain")
    yield live
    live.stop()


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's width
        yield page
        browser.close()


def test_chat_page_streams_stops_and_keeps_the_conversation(page_server, page):
    bodies = []
    page.on("request", lambda r: r.url.endswith("/chat/completions")
            and bodies.append(json.loads(r.post_data)))
    page.goto(page_server.url + "/")
    page.wait_for_function("document.getElementById('model-name').textContent.includes('tiny')")
    page.fill("#max-tokens", "3000")
    page.fill("#system", "You are a parrot.")
    page.fill("#input", "Hello there")
    page.click("#send")
    answer = page.locator(".message.assistant .content").first
    page.wait_for_function(
        "document.querySelector('.message.assistant .content').textContent.length > 20")
    assert not page.locator("#stop").is_disabled()
    page.click("#stop")
    stats = page.locator(".message.assistant .stats").first
    page.wait_for_function(
        "document.querySelector('.message.assistant .stats').textContent.includes('stopped')")
    assert "first token" in stats.text_content() and "tok/s" in stats.text_content()
    partial = answer.text_content()
    assert partial
    load = wait_idle(page_server)  # the stop closed the stream: the server freed the slot
    assert (load["in_flight"], load["cancelled"]) == (0, 1)

    page.fill("#max-tokens", "5")
    page.fill("#input", "And again?")
    page.press("#input", "Enter")
    page.wait_for_function("document.querySelectorAll('.message .stats')[3]"
                           "?.textContent.includes('tok/s')")
    assert page.locator(".message").count() == 4
    follow_up = bodies[-1]["messages"]
    assert [m["role"] for m in follow_up] == ["system", "user", "assistant", "user"]
    assert follow_up[2]["content"] == partial
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat_page.png"), full_page=True)
