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


def reviewer_page(browser, url: str, token: str, errors: list):
    """A logged-in reviewer on the queue page, page errors collected."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, url, token)
    page.wait_for_selector("#queue tbody tr")
    return page


def test_reviewer_records_labels_and_submits_then_auditor_approves(review_env, browser, shots):
    store, tokens = review_env["store"], review_env["tokens"]
    shots.mkdir(parents=True, exist_ok=True)
    with BackgroundServer(review_env["app"]) as server:
        errors = []
        page = reviewer_page(browser, server.url, tokens["alice"], errors)
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


MARKUP = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
TRACK = 'hands <img src=x onerror="window.pwned=3">'


def frames_at(t: float, fps: float = 30.0) -> bool:
    """A boundary sits on a frame (to the millisecond the page keeps)."""
    return abs(t * fps - round(t * fps)) < 0.05


def test_reviewer_corrects_proposals_by_keyboard_labels_while_playing_then_auditor_approves(review_env, browser, shots):
    """The walk of a reviewer who corrects instead of draws: accept the model's first proposal
    and delete the second, move the accepted segment's end by frame keys, label two more
    segments while the clip plays, change speed and loop by keys, put markup in every text
    field (kept as typed, never run), submit; then an auditor approves."""
    store, tokens = review_env["store"], review_env["tokens"]
    shots.mkdir(parents=True, exist_ok=True)
    with BackgroundServer(review_env["app"]) as server:
        errors = []
        page = reviewer_page(browser, server.url, tokens["alice"], errors)
        page.click("#start")
        page.wait_for_selector("body[data-ready='1']")
        page.wait_for_function("() => document.querySelector('video').readyState >= 2")
        proposals = page.locator("#proposals tbody tr")
        assert proposals.count() == 2 and "running" in proposals.first.inner_text()
        page.screenshot(path=str(shots / "review-proposals.png"), full_page=True)

        # accept the first proposal (running 0–1.5 s), delete the second by keyboard
        proposals.first.locator("button.accept").click()
        assert page.locator("#segments tbody tr").count() == 1 and proposals.count() == 1
        proposals.first.click()
        page.keyboard.press("Delete")
        assert proposals.count() == 0

        # adjust the accepted segment's end: select it (the playhead goes to its start), step 40
        # frames with "." and back 2 with ",", then "]" sets its end on that frame
        page.locator("#segments tbody tr").first.click()
        page.locator("body").press("Escape")  # focus leaves the row's inputs: keys go to the player
        for _ in range(40):
            page.keyboard.press(".")
        page.keyboard.press(",")
        page.keyboard.press(",")
        page.wait_for_function("() => document.getElementById('time').textContent.endsWith('frame 38')")
        page.keyboard.press("]")
        assert page.locator("#segments tbody tr").first.locator("input[data-field='end']").input_value() == "1.267"

        # label while playing, on a new track (its name in markup): the key for waving starts a
        # segment, the key for jumping ends it and starts the next on the same frame, "0" ends
        # that one. Keys stand for the clip's likeliest labels first, as the page lists them.
        keys = {el.get_attribute("data-label"): el.get_attribute("data-key")
                for el in page.locator("#key-labels .key-label").all()}
        assert set(keys) == {"walking", "running", "jumping", "waving"} and keys[page.locator("#model b").inner_text()] == "1"  # the model's answer
        page.fill("#new-track", TRACK)
        page.click("#add-track")
        page.locator("body").press("Escape")
        page.keyboard.press("Space")
        page.wait_for_function("() => document.querySelector('video').currentTime > 1.7")
        page.keyboard.press(keys["waving"])
        page.wait_for_function("() => document.querySelector('video').currentTime > 2.5")
        page.keyboard.press(keys["jumping"])
        page.wait_for_function("() => document.querySelector('video').currentTime > 3.1")
        page.keyboard.press("0")
        page.keyboard.press("Space")
        assert page.locator("#segments tbody tr").count() == 3

        # speed by keys, within 0.1×–4×
        for _ in range(2):
            page.keyboard.press(">")
        assert page.evaluate("document.querySelector('video').playbackRate") == 2
        for _ in range(9):
            page.keyboard.press("<")
        assert page.evaluate("document.querySelector('video').playbackRate") == 0.1
        page.keyboard.press(">")
        page.keyboard.press(">")
        page.keyboard.press(">")
        page.keyboard.press(">")  # back to 1×

        # loop the selected (last) segment: the playhead keeps coming back into it
        page.locator("#segments tbody tr").last.click()
        page.locator("body").press("Escape")
        page.keyboard.press("l")
        assert page.get_attribute("#loop", "aria-pressed") == "true"
        page.keyboard.press("Space")
        page.wait_for_timeout(1500)
        t = page.evaluate("document.querySelector('video').currentTime")
        page.keyboard.press("Space")
        last = page.locator("#segments tbody tr").last
        start = float(last.locator("input[data-field='start']").input_value())
        end = float(last.locator("input[data-field='end']").input_value())
        assert start - 0.1 <= t <= end + 0.1, (start, t, end)
        page.keyboard.press("l")

        # the curve switches to the model's per-window confidence
        page.select_option("#curve", "confidence")
        page.wait_for_timeout(300)

        # markup in every text field: kept as typed, never run
        for row in range(3):
            page.locator("#segments tbody tr").nth(row).locator("input.seg-text").fill(f"left hand < right hand {MARKUP}")
        page.fill("#notes", f"notes {MARKUP}")
        page.screenshot(path=str(shots / "review-labelled.png"), full_page=True)
        page.locator("body").press("Control+Enter")
        page.wait_for_selector("body[data-submitted='1']", state="attached")
        assert page.evaluate("window.pwned") is None
        assert errors == []

        task = next(t for t in store.review_tasks("reviewed") if t.reviewers == ["alice"])
        (ann,) = store.annotations(task.task_id)
        running, waving, jumping = sorted(ann.segments, key=lambda s: s.start)
        assert (running.label, running.start, running.end) == ("running", 0.0, 1.267)
        assert (waving.label, jumping.label) == ("waving", "jumping")
        assert waving.end == jumping.start and all(frames_at(x) for x in (waving.start, waving.end, jumping.end))
        assert 1.6 < waving.start < waving.end < jumping.end < 3.6
        assert all(s.text == f"left hand < right hand {MARKUP}" for s in ann.segments)
        assert ann.clip.notes == f"notes {MARKUP}" and ann.tracks == ["activity", TRACK]
        assert (running.track, waving.track, jumping.track) == ("activity", TRACK, TRACK)

        auditor = browser.new_page(viewport={"width": 1440, "height": 900})
        auditor.on("pageerror", lambda e: errors.append(str(e)))
        login(auditor, server.url, tokens["carol"])
        auditor.wait_for_selector("#audit tbody tr")
        auditor.locator("#audit tbody tr a").first.click()
        auditor.wait_for_selector("body[data-ready='1']")
        assert auditor.locator("#mode").inner_text() == "audit"
        assert auditor.locator("#segments tbody tr").count() == 3 and auditor.locator("#proposals tbody tr").count() == 0
        auditor.fill("#audit-comment", f"fine {MARKUP}")
        auditor.click("#approve")
        auditor.wait_for_selector("body[data-submitted='1']", state="attached")
        auditor.reload()
        auditor.wait_for_selector("body[data-ready='1']")
        assert auditor.evaluate("window.pwned") is None and errors == []
        assert MARKUP in auditor.locator("#history").inner_text()
        assert store.audits(task.task_id)[0].comment == f"fine {MARKUP}"
