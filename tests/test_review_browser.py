"""The review tool in a real browser: Debian's headless Chromium driven by Playwright against
the app served by uvicorn on loopback. A reviewer logs in, opens the first queued clip, plays
it, records a segment on a new track while it plays, labels it and submits; the stored
annotation is checked. Then an auditor approves it. Screenshots of the pages go to a temporary
folder, or to $CLIPWATCH_SCREENSHOTS (`make screenshots` sets docs/: the README's pictures), so a
test run never rewrites tracked files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_review_support import review_env, review_media  # noqa: F401  (fixtures)

from inference.server import BackgroundServer

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def shots(tmp_path) -> Path:
    return Path(os.environ.get("CLIPWATCH_SCREENSHOTS") or tmp_path)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def login(page, url: str, token: str) -> None:
    page.goto(f"{url}/login")
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_url(f"{url}/")


def test_reviewer_records_labels_and_submits_then_auditor_approves(review_env, browser, shots):
    store, tokens = review_env["store"], review_env["tokens"]
    shots.mkdir(parents=True, exist_ok=True)
    with BackgroundServer(review_env["app"]) as server:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        login(page, server.url, tokens["alice"])
        page.wait_for_selector("#queue tbody tr")
        first_ref = page.locator("#queue tbody tr").first.get_attribute("data-ref")
        page.screenshot(path=str(shots / "review-queue.png"), full_page=True)

        page.click("#start")  # leases the first task in queue order
        page.wait_for_url(f"{server.url}/clip/{first_ref}")
        page.wait_for_selector("body[data-ready='1']")
        assert page.evaluate("document.querySelector('video').canPlayType('video/mp4; codecs=\"avc1.64001f\"')") != ""
        page.wait_for_function("() => document.querySelector('video').readyState >= 2")

        page.fill("#new-track", "second person")
        page.click("#add-track")
        assert page.locator(".track-chip.on").inner_text() == "second person"

        page.click("#play")
        page.wait_for_function("() => document.querySelector('video').currentTime > 0.3")
        page.click("#record")
        start = page.evaluate("document.querySelector('video').currentTime")
        page.wait_for_function(f"() => document.querySelector('video').currentTime > {start + 1.0}")
        page.click("#record")
        page.click("#play")  # pause
        row = page.locator("#segments tbody tr").first
        row.locator("select.seg-label").select_option("waving")
        row.locator("input.seg-text").fill("person on the right waves")
        page.check("input[name='model-correct'][value='no']")
        page.check("input[name='rating'][value='4']")
        page.screenshot(path=str(shots / "review-clip.png"), full_page=True)
        page.click("#submit")
        page.wait_for_selector("body[data-submitted='1']", state="attached")
        assert page.locator("#message").inner_text() == "saved ✓"
        assert errors == []

        task = next(t for t in store.review_tasks("reviewed") if t.reviewers == ["alice"])
        (ann,) = store.annotations(task.task_id)
        assert ann.author == "alice" and ann.tracks == ["activity", "second person"]
        (seg,) = ann.segments
        assert seg.track == "second person" and seg.label == "waving"
        assert seg.text == "person on the right waves"
        assert 0.2 < seg.start < seg.end <= 4.05 and seg.end - seg.start > 0.8
        assert ann.clip.model_correct is False and ann.clip.rating == 4
        prediction = store.get_prediction(task.stream_id, task.sequence)
        assert (prediction.status, prediction.human_label, prediction.reviewed_by) == ("reviewed", "waving", "alice")

        # the auditor sees it, approves it; the agreement is shown
        auditor = browser.new_page(viewport={"width": 1440, "height": 900})
        login(auditor, server.url, tokens["carol"])
        auditor.wait_for_selector("#audit tbody tr")
        auditor.locator("#audit tbody tr a").first.click()
        auditor.wait_for_selector("body[data-ready='1']")
        assert auditor.locator("#mode").inner_text() == "audit"
        assert auditor.locator("#segments tbody tr").count() == 1
        auditor.fill("#audit-comment", "boundaries fine")
        auditor.click("#approve")
        auditor.wait_for_selector("body[data-submitted='1']", state="attached")
        assert "label IoU 1.00" in auditor.locator("#message").inner_text()
        (audit,) = store.audits(task.task_id)
        assert audit.decision == "approved" and audit.auditor == "carol"
        assert store.get_prediction(task.stream_id, task.sequence).status == "audited"

        auditor.goto(f"{server.url}/operator")
        auditor.wait_for_selector(".stream table tbody tr")
        assert "waving (carol)" in auditor.locator(".stream").first.inner_text()
        auditor.screenshot(path=str(shots / "review-operator.png"), full_page=True)
