"""Every route of the review app over HTTP (FastAPI's TestClient), including auth failures and
bad input: nothing half-stored, every rejection a clear JSON error counted in the metrics."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from clipwatch.records import ReviewTask
from clipwatch.review_policy import ReviewPolicy
from clipwatch.store import save_prediction
from review.app import task_ref
from review.auth import UsersFile

from test_review_support import LABELS, flagged_prediction, review_env, review_media  # noqa: F401


def bearer(env, name):
    return {"Authorization": f"Bearer {env['tokens'][name]}"}


def client(env) -> TestClient:
    return TestClient(env["app"], base_url="http://review.test")


def browser_session(env, name) -> tuple[TestClient, str]:
    """Log in as a browser does; returns the client (with the cookie) and the CSRF token."""
    c = client(env)
    r = c.post("/login", data={"token": env["tokens"][name]}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    html = c.get("/").text
    boot = json.loads(html.split('<script type="application/json" id="boot">')[1].split("</script>")[0])
    return c, boot["csrf"]


def labels(start=0.5, end=2.0, label="running", **extra):
    seg = {"id": "s1", "track": "activity", "start": start, "end": end, "label": label, **extra}
    return {"tracks": ["activity"], "segments": [seg], "clip": {"model_correct": False, "rating": 3}}


def leased(env, name) -> dict:
    r = client(env).post("/api/next", headers=bearer(env, name))
    assert r.status_code == 200, r.text
    return r.json()["task"]


def error_code(r) -> str:
    return r.json()["error"]["code"]


# --- identity -----------------------------------------------------------------------------------

def test_login_logout_and_pages(review_env):
    c, csrf = browser_session(review_env, "alice")
    assert csrf
    for path in ("/", "/operator"):
        r = c.get(path)
        assert r.status_code == 200 and "alice · reviewer" in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]
    t = leased(review_env, "bob")
    assert c.get(f"/clip/{t['ref']}").status_code == 200
    assert c.get("/login").status_code == 200
    r = c.post("/logout", follow_redirects=False)
    assert r.status_code == 303 and 'cw_session=""' in r.headers["set-cookie"]


def test_anonymous_expired_and_unknown_tokens_are_refused(review_env):
    c = client(review_env)
    r = c.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    for path in ("/api/queue", "/api/me", "/api/streams"):
        assert c.get(path).status_code == 401
    assert error_code(c.post("/api/next")) == "unauthorized"
    r = c.get("/api/queue", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and r.json()["error"]["message"] == "unknown token"
    r = c.get("/api/queue", headers=bearer(review_env, "erin"))
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
    r = c.post("/login", data={"token": review_env["tokens"]["erin"]}, follow_redirects=False)
    assert r.status_code == 401
    r = c.post("/login", data={"token": review_env["tokens"]["alice"]},
               headers={"Origin": "http://evil.example"}, follow_redirects=False)
    assert r.status_code == 401 and "cross-site" in r.json()["error"]["message"]
    c.cookies.set("cw_session", "forged.value")
    assert c.get("/api/me").status_code == 401
    metrics = c.get("/metrics").text
    assert 'clipwatch_review_requests_total{outcome="unauthorized",route="/api/queue"}' in metrics


def test_cookie_writes_need_the_csrf_token(review_env):
    c, csrf = browser_session(review_env, "alice")
    r = c.post("/api/next")
    assert r.status_code == 401 and "CSRF" in r.json()["error"]["message"]
    assert c.post("/api/next", headers={"X-CSRF-Token": "wrong"}).status_code == 401
    r = c.post("/api/next", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["task"]["lease_owner"] == "alice"


def test_every_write_route_refuses_a_cookie_without_the_csrf_token(review_env):
    """Every state-changing route the app has (found from its routes, so a new one is covered
    the day it is added), called with a valid session cookie but no or a wrong CSRF token, is
    refused with 401 and changes nothing. /login has its own cross-site check; /logout is a
    plain form that only ends the caller's own session."""
    app = review_env["app"]
    writes = sorted(r.path for r in app.routes if "POST" in getattr(r, "methods", set())
                    and r.path not in ("/login", "/logout"))
    assert writes == ["/api/next", "/api/tasks/{ref}/audit", "/api/tasks/{ref}/lease",
                      "/api/tasks/{ref}/skip", "/api/tasks/{ref}/submit"]
    store = review_env["store"]
    ref = task_ref(store.review_tasks()[0].task_id)
    before = {t.task_id: t.model_dump() for status in ("pending", "reviewed", "audited")
              for t in store.review_tasks(status)}
    c, csrf = browser_session(review_env, "dave")  # an admin: every role check would pass
    for path in writes:
        url = path.replace("{ref}", ref)
        body = labels() if path.endswith("/submit") else {"decision": "approve"} if path.endswith("/audit") else None
        for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": csrf[:-1]}):
            r = c.post(url, json=body, headers=headers)
            assert r.status_code == 401 and "CSRF" in r.json()["error"]["message"], (path, headers, r.text)
    after = {t.task_id: t.model_dump() for status in ("pending", "reviewed", "audited")
             for t in store.review_tasks(status)}
    assert after == before and store.audits(store.review_tasks()[0].task_id) == []


def test_user_text_is_escaped_in_pages(review_env):
    name = '<img src=x onerror=alert(1)>'
    token = UsersFile.add(review_env["users_file"], name, "reviewer")
    from review.app import create_app

    app = create_app(review_env["store"], review_env["users_file"], LABELS,
                     reader=review_env["app"].state.media.reader, secret=b"s")
    c = TestClient(app, base_url="http://review.test")
    c.post("/login", data={"token": token})
    html = c.get("/").text
    assert name not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "\\u003cimg" in html  # inside the JSON boot block too


def test_me(review_env):
    r = client(review_env).get("/api/me", headers=bearer(review_env, "carol"))
    assert r.json() == {"name": "carol", "role": "auditor", "labels": LABELS,
                        "quality_flags": ["occluded", "blurry", "dark", "partial", "ambiguous", "camera_moving"]}


# --- queue and leases ---------------------------------------------------------------------------

def test_queue_order_is_uncertain_first_with_cluster_centres_leading(review_env):
    r = client(review_env).get("/api/queue", headers=bearer(review_env, "alice"))
    body = r.json()
    assert body["features"] == "embedding" and body["page_size"] == 2
    tasks = body["tasks"]
    assert [t["rank"] for t in tasks] == list(range(1, 9))  # the 2 confident predictions made no task
    # the uncertain half (seq 0-3) forms two clusters (even / odd); their centres lead
    assert [t["centroid"] for t in tasks[:2]] == [True, True]
    assert {t["cluster"] for t in tasks[:2]} == {0, 1}
    assert {t["sequence"] % 2 for t in tasks[:2]} == {0, 1}
    assert {t["sequence"] for t in tasks[:4]} == {0, 1, 2, 3}
    assert [t["sequence"] for t in tasks[4:]] == [4, 5, 6, 7]  # the rest by uncertainty


def test_leases_never_give_one_task_to_two_reviewers_and_expire(review_env):
    env, c = review_env, client(review_env)
    a, b = leased(env, "alice"), leased(env, "bob")
    assert a["task_id"] != b["task_id"]
    assert leased(env, "alice")["task_id"] == a["task_id"]  # asking again returns the same lease
    r = c.post(f"/api/tasks/{a['ref']}/lease", headers=bearer(env, "bob"))
    assert r.status_code == 409 and error_code(r) == "lease_conflict"
    r = c.post(f"/api/tasks/{a['ref']}/submit", headers=bearer(env, "bob"), json=labels())
    assert r.status_code == 409 and "not leased to you" in r.json()["error"]["message"]
    env["clock"].now += 301  # alice's lease runs out
    r = c.post(f"/api/tasks/{a['ref']}/submit", headers=bearer(env, "alice"), json=labels())
    assert r.status_code == 409 and "expired" in r.json()["error"]["message"]
    r = c.post(f"/api/tasks/{a['ref']}/lease", headers=bearer(env, "bob"))
    assert r.status_code == 200 and r.json()["task"]["lease_owner"] == "bob"
    assert env["store"].annotations(a["task_id"]) == []


def test_skip_releases_the_task_and_does_not_offer_it_again(review_env):
    env, c = review_env, client(review_env)
    a = leased(env, "alice")
    assert c.post(f"/api/tasks/{a['ref']}/skip", headers=bearer(env, "alice")).json() == {"skipped": True}
    assert leased(env, "alice")["task_id"] != a["task_id"]
    assert leased(env, "bob")["task_id"] == a["task_id"]  # free for others
    r = c.post(f"/api/tasks/{a['ref']}/skip", headers=bearer(env, "alice"))
    assert r.status_code == 409


def test_task_detail_and_unknown_tasks(review_env):
    env, c = review_env, client(review_env)
    t = leased(env, "alice")
    d = c.get(f"/api/tasks/{t['ref']}", headers=bearer(env, "alice")).json()
    assert d["task"]["task_id"] == t["task_id"] and d["labels"] == LABELS
    assert d["media"]["duration"] == pytest.approx(4.0) and d["media"]["fps"] == 30.0
    assert len(d["media"]["motion"]) == 120 and max(d["media"]["motion"]) <= 1.0
    assert d["prediction"]["label"] == t["label"] and "embedding" not in d["prediction"]
    r = c.get(f"/api/tasks/{task_ref('nope#1#v1')}", headers=bearer(env, "alice"))
    assert r.status_code == 404 and error_code(r) == "task_not_found"
    assert error_code(c.get("/api/tasks/%25%25%25", headers=bearer(env, "alice"))) in ("invalid_request", "task_not_found")


def test_task_detail_carries_the_models_proposals_or_why_there_are_none(review_env, review_media):
    from clipwatch.records import Presegmentation

    env, c, store = review_env, client(review_env), review_env["store"]
    t = leased(env, "alice")
    d = c.get(f"/api/tasks/{t['ref']}", headers=bearer(env, "alice")).json()
    pre = d["prediction"]["presegmentation"]
    assert [(p["start"], p["end"], p["label"]) for p in pre["proposals"]] == [(0.0, 1.5, "running"), (1.5, 4.0, "waving")]
    assert len(pre["windows"]) == 13 and pre["note"] == ""
    p = flagged_prediction(60, str(review_media["segments"][1]), 0.2, "running", [1.0] + [0.0] * 7)
    p.presegmentation = Presegmentation(note="no proposals: segment is not decodable video: x")
    save_prediction(store, p)
    r = c.post(f"/api/tasks/{task_ref('cam1#60#v1')}/lease", headers=bearer(env, "bob"))
    d = c.get(f"/api/tasks/{r.json()['task']['ref']}", headers=bearer(env, "bob")).json()
    assert d["prediction"]["presegmentation"] == {"windows": [], "proposals": [],
                                                  "note": "no proposals: segment is not decodable video: x"}


# --- submitting ---------------------------------------------------------------------------------

@pytest.mark.parametrize("payload, message", [
    (labels(start=2.0, end=1.0), "must be after start"),
    (labels(start=1.0, end=1.0), "must be after start"),
    (labels(start=-1.0, end=1.0), "greater than or equal to 0"),
    (labels(start=3.0, end=9.0), "after the clip's end"),
    (labels(label="dancing"), "unknown label 'dancing'"),
    (labels(text="bell \x07 in the text"), "control character (U+0007)"),
    (labels(text="zero\u200bwidth"), "control character (U+200B)"),
    (labels(quality=["sparkly"]), "unknown quality flags"),
    (labels(extra_field=1), "Extra inputs are not permitted"),
    ({"tracks": ["activity"], "segments": [{"id": "s1", "track": "elsewhere", "start": 0, "end": 1,
                                            "label": "running"}]}, "unknown track"),
    ({"tracks": ["activity"], "segments": [], "clip": {}}, "at least one segment"),
    ({"tracks": ["activity"], "segments": [], "clip": {"label": "running", "rating": 9}}, "less than or equal to 5"),
    ({"tracks": ["activity"], "segments": [], "clip": {"label": "running", "notes": "escape \x1b[31m"}}, "control character (U+001B)"),
])
def test_bad_submissions_are_rejected_and_store_nothing(review_env, payload, message):
    env, c = review_env, client(review_env)
    t = leased(env, "alice")
    r = c.post(f"/api/tasks/{t['ref']}/submit", headers=bearer(env, "alice"), json=payload)
    assert r.status_code == 422, r.text
    assert error_code(r) == "invalid_annotation" and message in r.json()["error"]["message"]
    assert env["store"].annotations(t["task_id"]) == []
    stored = env["store"].get_review_task(t["task_id"])
    assert stored.status == "pending" and stored.lease_owner == "alice" and stored.reviewers == []


def test_oversized_and_malformed_bodies(review_env):
    env, c = review_env, client(review_env)
    t = leased(env, "alice")
    big = labels(text="x" * 1000)
    big["segments"] = [dict(big["segments"][0], id=f"s{i}") for i in range(300)]
    r = c.post(f"/api/tasks/{t['ref']}/submit", headers=bearer(env, "alice"), json=big)
    assert r.status_code == 413 and error_code(r) == "payload_too_large"
    r = c.post(f"/api/tasks/{t['ref']}/submit", headers={**bearer(env, "alice"), "Content-Type": "application/json"},
               content=b"{not json")
    assert r.status_code == 422 and error_code(r) == "invalid_annotation"
    assert env["store"].annotations(t["task_id"]) == []


def test_submit_writes_the_label_back_onto_the_prediction(review_env):
    env, c = review_env, client(review_env)
    t = leased(env, "alice")
    r = c.post(f"/api/tasks/{t['ref']}/submit", headers=bearer(env, "alice"),
               json=labels(label="waving", text="waves at 555-123-4567"))
    assert r.status_code == 200 and r.json()["task"]["status"] == "reviewed"
    p = env["store"].get_prediction(t["stream_id"], t["sequence"])
    assert (p.status, p.human_label, p.reviewed_by) == ("reviewed", "waving", "alice")
    assert p.reviewed_at and p.label == t["label"]  # the model's own answer is kept
    (a,) = env["store"].annotations(t["task_id"])
    assert a.segments[0].text == "waves at 555-123-4567"  # stored as typed; redacted on export
    assert a.clip_duration == pytest.approx(4.0) and a.clip_fps == 30.0
    r = c.post(f"/api/tasks/{t['ref']}/submit", headers=bearer(env, "alice"), json=labels())
    assert r.status_code == 409 and error_code(r) == "wrong_state"
    streams = c.get("/api/streams", headers=bearer(env, "bob")).json()
    seg = next(s for s in streams["streams"][0]["segments"] if s["sequence"] == t["sequence"])
    assert (seg["human_label"], seg["reviewed_by"], seg["status"]) == ("waving", "alice", "reviewed")
    assert streams["pending_tasks"] == 7


MARKUP = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def test_free_text_is_stored_as_typed_markup_included(review_env):
    """What people type ("left hand < right hand", even markup) is accepted and kept verbatim in
    every text field; safety is escaping on output (the browser test checks no script runs)."""
    env, c, store = review_env, client(review_env), review_env["store"]
    t = leased(env, "alice")
    track = "hands <left> & right"
    body = {"tracks": ["activity", track],
            "segments": [{"id": "s1", "track": track, "start": 0.5, "end": 2.0, "label": "waving",
                          "text": "left hand < right hand\n" + MARKUP}],
            "clip": {"label": "waving", "notes": "ünïcode, tabs\tand\nlines " + MARKUP}}
    r = c.post(f"/api/tasks/{t['ref']}/submit", headers=bearer(env, "alice"), json=body)
    assert r.status_code == 200, r.text
    (a,) = store.annotations(t["task_id"])
    assert a.tracks == ["activity", track] and a.segments[0].text == body["segments"][0]["text"]
    assert a.clip.notes == body["clip"]["notes"]
    r = c.post(f"/api/tasks/{t['ref']}/audit", headers=bearer(env, "carol"),
               json={"decision": "approved", "comment": "ok " + MARKUP})
    assert r.status_code == 200 and store.audits(t["task_id"])[0].comment == "ok " + MARKUP
    page = c.get(f"/clip/{t['ref']}", headers=bearer(env, "carol")).text
    assert "<script>window.pwned" not in page  # the page carries no user text as markup


def test_two_required_reviews_reach_consensus(review_env, review_media):
    env, c, store = review_env, client(review_env), review_env["store"]
    policy = ReviewPolicy(sample_fraction=0.0, reviews_required=2)
    p = flagged_prediction(50, str(review_media["segments"][0]), 0.05, "jumping", [0.0] * 7 + [1.0],
                           policy=policy)
    task = save_prediction(store, p)
    assert task.reviews_required == 2
    ref = task_ref(task.task_id)
    assert c.post(f"/api/tasks/{ref}/lease", headers=bearer(env, "alice")).status_code == 200
    c.post(f"/api/tasks/{ref}/submit", headers=bearer(env, "alice"), json=labels(0.0, 3.0, "running"))
    t = store.get_review_task(task.task_id)
    assert t.status == "pending" and t.reviewers == ["alice"] and t.lease_owner is None
    r = c.post(f"/api/tasks/{ref}/lease", headers=bearer(env, "alice"))
    assert r.status_code == 409 and "already reviewed" in r.json()["error"]["message"]
    assert c.post(f"/api/tasks/{ref}/lease", headers=bearer(env, "bob")).status_code == 200
    c.post(f"/api/tasks/{ref}/submit", headers=bearer(env, "bob"), json=labels(1.0, 3.0, "running"))
    t = store.get_review_task(task.task_id)
    assert t.status == "reviewed" and t.human_label == "running" and t.reviewers == ["alice", "bob"]
    assert t.consensus["majority"] == "running" and t.consensus["mean_segment_iou"] == pytest.approx(2 / 3, abs=1e-3)
    assert store.get_prediction("cam1", 50).reviewed_by == "consensus"


# --- audit --------------------------------------------------------------------------------------

def test_audit_approve_and_adjust(review_env):
    env, c, store = review_env, client(review_env), review_env["store"]
    first, second = leased(env, "alice"), leased(env, "bob")
    c.post(f"/api/tasks/{first['ref']}/submit", headers=bearer(env, "alice"), json=labels(0.0, 2.0, "running"))
    r = c.post(f"/api/tasks/{second['ref']}/audit", headers=bearer(env, "carol"), json={"decision": "approved"})
    assert r.status_code == 409 and "only reviewed tasks" in r.json()["error"]["message"]
    c.post(f"/api/tasks/{second['ref']}/submit", headers=bearer(env, "bob"), json=labels(0.0, 2.0, "running"))

    r = c.post(f"/api/tasks/{first['ref']}/audit", headers=bearer(env, "alice"), json={"decision": "approved"})
    assert r.status_code == 403 and error_code(r) == "forbidden"
    queue = c.get("/api/audit", headers=bearer(env, "carol")).json()
    assert {t["task_id"] for t in queue["tasks"]} == {first["task_id"], second["task_id"]}
    assert c.get("/api/audit", headers=bearer(env, "bob")).status_code == 403

    r = c.post(f"/api/tasks/{first['ref']}/audit", headers=bearer(env, "carol"),
               json={"decision": "approved", "comment": "good"})
    assert r.status_code == 200 and r.json()["audit"]["agreement"] == {
        "segment_iou": 1.0, "label_iou": 1.0, "clip_label_agree": True}
    assert store.get_prediction(first["stream_id"], first["sequence"]).status == "audited"

    r = c.post(f"/api/tasks/{second['ref']}/audit", headers=bearer(env, "carol"), json={"decision": "adjusted"})
    assert r.status_code == 422 and "corrected labels" in r.json()["error"]["message"]
    r = c.post(f"/api/tasks/{second['ref']}/audit", headers=bearer(env, "dave"),
               json={"decision": "adjusted", "labels": labels(1.0, 3.0, "waving")})
    ag = r.json()["audit"]["agreement"]
    assert ag["segment_iou"] == pytest.approx(1 / 3, abs=1e-3) and ag["label_iou"] == 0.0
    assert ag["clip_label_agree"] is False
    t = store.get_review_task(second["task_id"])
    assert t.status == "audited" and t.human_label == "waving"
    p = store.get_prediction(second["stream_id"], second["sequence"])
    assert (p.human_label, p.reviewed_by, p.status) == ("waving", "dave", "audited")
    r = c.post(f"/api/tasks/{second['ref']}/audit", headers=bearer(env, "carol"), json={"decision": "approved"})
    assert r.status_code == 409
    assert "clipwatch_review_audit_label_iou_count" in c.get("/metrics").text


def test_auditor_cannot_audit_own_review(review_env):
    env, c = review_env, client(review_env)
    t = leased(env, "carol")  # auditors may review too
    c.post(f"/api/tasks/{t['ref']}/submit", headers=bearer(env, "carol"), json=labels())
    r = c.post(f"/api/tasks/{t['ref']}/audit", headers=bearer(env, "carol"), json={"decision": "approved"})
    assert r.status_code == 409 and "reviewed" in r.json()["error"]["message"]


# --- exports and media --------------------------------------------------------------------------

def test_export_api_is_for_admins(review_env):
    env, c = review_env, client(review_env)
    t = leased(env, "alice")
    c.post(f"/api/tasks/{t['ref']}/submit", headers=bearer(env, "alice"), json=labels(text="mail a@b.co"))
    assert c.get("/api/export/groundtruth", headers=bearer(env, "carol")).status_code == 403
    r = c.get("/api/export/groundtruth", headers=bearer(env, "dave"))
    (line,) = [json.loads(x) for x in r.text.splitlines()]
    assert line["source"] == t["segment_uri"]
    assert line["clipwatch-review"]["answers"][0]["answerContent"]["annotations"]["streams"]["activity"][0]["text"] == "mail [EMAIL]"
    ls = c.get("/api/export/labelstudio", headers=bearer(env, "dave")).json()
    assert len(ls) == 1 and ls[0]["predictions"][0]["score"] == pytest.approx(t["confidence"])
    r = c.get("/api/export/training", headers=bearer(env, "dave"))
    assert r.status_code == 400 and "clipwatch export" in r.json()["error"]["message"]


def test_media_is_mp4_with_ranges_and_respects_the_allow_list(review_env, tmp_path):
    env, c, store = review_env, client(review_env), review_env["store"]
    t = leased(env, "alice")
    url = f"/media/{t['ref']}.mp4"
    assert c.get(url).status_code == 401
    full = c.get(url, headers=bearer(env, "alice"))
    assert full.status_code == 200 and full.headers["content-type"] == "video/mp4"
    assert full.content[4:8] == b"ftyp" and full.headers["accept-ranges"] == "bytes"
    assert full.content.find(b"moov") < full.content.find(b"mdat")  # faststart: seekable at once
    part = c.get(url, headers={**bearer(env, "alice"), "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == full.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(full.content)}"
    tail = c.get(url, headers={**bearer(env, "alice"), "Range": "bytes=-10"})
    assert tail.content == full.content[-10:]
    r = c.get(url, headers={**bearer(env, "alice"), "Range": f"bytes={len(full.content) + 5}-"})
    assert r.status_code == 416
    outside = tmp_path / "elsewhere" / "seg_00001.ts"
    outside.parent.mkdir()
    outside.write_bytes(b"x")
    task = ReviewTask(task_id="x#1#v1", stream_id="x", sequence=1, segment_uri=str(outside),
                      model_version="v1", label="running", confidence=0.1, reasons=["test"])
    store.put_review_task(task)
    r = c.get(f"/media/{task_ref(task.task_id)}.mp4", headers=bearer(env, "alice"))
    assert r.status_code == 403 and error_code(r) == "not_allowed"


def test_health_and_static_bundle(review_env):
    c = client(review_env)
    assert c.get("/healthz").json() == {"status": "ok"}
    js = c.get("/static/dist/clip.js")
    assert js.status_code == 200 and b"wavesurfer" in js.content.lower()


def test_the_whole_flow_on_dynamodb(dynamo_store, review_media, tmp_path):
    """Lease, conflict, submit, audit and write-back against DynamoDB (moto's server over HTTP)."""
    from clipwatch.blobs import SegmentReader
    from review.app import create_app

    from test_review_support import ROLES, Clock, seed_store

    seed_store(dynamo_store, review_media["segments"], n=4)
    users = tmp_path / "users.json"
    tokens = {name: UsersFile.add(users, name, role) for name, role in ROLES.items()}
    app = create_app(dynamo_store, users, LABELS, reader=SegmentReader(allowed_dirs=[review_media["dir"]]),
                     page_size=2, clock=Clock())
    c = TestClient(app)
    auth = {name: {"Authorization": f"Bearer {t}"} for name, t in tokens.items()}
    a = c.post("/api/next", headers=auth["alice"]).json()["task"]
    b = c.post("/api/next", headers=auth["bob"]).json()["task"]
    assert a["task_id"] != b["task_id"]
    assert c.post(f"/api/tasks/{a['ref']}/lease", headers=auth["bob"]).status_code == 409
    r = c.post(f"/api/tasks/{a['ref']}/submit", headers=auth["alice"], json=labels(label="jumping"))
    assert r.status_code == 200 and r.json()["task"]["status"] == "reviewed"
    r = c.post(f"/api/tasks/{a['ref']}/audit", headers=auth["carol"], json={"decision": "approved"})
    assert r.status_code == 200
    p = dynamo_store.get_prediction(a["stream_id"], a["sequence"])
    assert (p.status, p.human_label) == ("audited", "jumping")
    assert len(dynamo_store.annotations(a["task_id"])) == 1 and len(dynamo_store.audits(a["task_id"])) == 1
    assert len(c.get("/api/queue", headers=auth["dave"]).json()["tasks"]) == 3
