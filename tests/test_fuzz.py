"""Throw what callers really send at the two HTTP surfaces — random JSON (right keys, wrong
values, numbers past every store's range, NaN), random bytes, and segments cut at random
points — and find no 5xx: every answer is a 2xx or a clear 4xx. Seeded, so a failure repeats."""

from __future__ import annotations

import json
import random

import pytest
from fastapi.testclient import TestClient

from clipwatch.config import Settings
from clipwatch.records import MAX_SEQUENCE
from inference.predictor import Endpoint
from inference.server import create_app

from test_review_support import LABELS, review_env, review_media  # noqa: F401

SEED = 20261201
NUMBERS = [0, -1, 1, 2**31, 2**63 - 1, 2**63, 10**23, -10**23, 1e308, 1e400, -0.0, 0.5, float("nan"),
           float("inf"), 99999999999999999999999]
STRINGS = ["", "x", "s3://", "s3://bucket", "/", "/etc/passwd", "file:///nope.ts", "\x00", "ü" * 300,
           "a" * 5000, "<script>", "../../../x.ts", "s3://b/k?versionId=1", "%00"]


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(7 if depth < 2 else 4)
    if kind == 0:
        return rng.choice(NUMBERS)
    if kind == 1:
        return rng.choice(STRINGS)
    if kind == 2:
        return rng.choice([None, True, False])
    if kind == 3:
        return rng.randint(-10**30, 10**30)
    if kind == 4:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["uri", "s3_uri", "x", "sequence", "label"]): random_value(rng, depth + 1)
            for _ in range(rng.randrange(4))}


def body_of(value) -> bytes:
    # Python's json writes NaN/Infinity, which many JSON parsers (and pydantic's) accept.
    return json.dumps(value, allow_nan=True).encode()


@pytest.fixture(scope="module")
def endpoint_client(media, tiny_classifier):
    settings = Settings(store_url="sqlite:///:memory:", allowed_dirs=(media["dir"],))
    endpoint = Endpoint.from_settings(tiny_classifier, settings, decode_workers=0)
    try:
        yield TestClient(create_app(endpoint), raise_server_exceptions=False), media
    finally:
        endpoint.close()


def test_invocations_answer_random_requests_with_a_4xx_never_a_5xx(endpoint_client, tmp_path):
    client, media = endpoint_client
    rng = random.Random(SEED)
    good = str(media["segment"])
    keys = ["uri", "s3_uri", "S3_VIDEO_PATH", "stream_id", "sequence", "start_time", "MODEL_MAX_FRAMES",
            "DETECTION_TABLE_NAME", "unknown"]
    bodies: list[bytes] = []
    for _ in range(250):  # the right keys with random values, the segment mostly real
        request = {"uri": good} if rng.random() < 0.7 else {}
        for key in rng.sample(keys, rng.randrange(1, 4)):
            request[key] = random_value(rng)
        bodies.append(body_of(request))
    bodies += [body_of(random_value(rng)) for _ in range(60)]
    bodies += [rng.randbytes(rng.randrange(1, 300)) for _ in range(40)]
    bodies += [body_of({"uri": good, "sequence": n}) for n in (MAX_SEQUENCE, MAX_SEQUENCE + 1, 10**23)]
    # Segments cut short at random points, as an upload that stopped midway leaves them.
    data = media["segment"].read_bytes()
    for i in range(12):
        cut = media["dir"] / f"fuzz_cut_{i:02d}.ts"
        cut.write_bytes(data[:rng.randrange(1, len(data))])
        bodies.append(body_of({"uri": str(cut)}))
    big_name = media["dir"] / "channel_99999999999999999999999.ts"
    big_name.write_bytes(data)
    bodies.append(body_of({"uri": str(big_name)}))
    statuses = []
    for body in bodies:
        r = client.post("/invocations", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code < 500, (body[:300], r.status_code, r.text[:500])
        if r.status_code >= 400:
            assert r.json()["error"]["code"] and r.json()["error"]["message"], r.text
        statuses.append(r.status_code)
    assert statuses.count(200) >= 10 and any(400 <= s < 500 for s in statuses)  # both kinds were hit


def test_the_review_api_answers_random_bodies_with_a_4xx_never_a_5xx(review_env):  # noqa: F811
    from review.app import task_ref

    client = TestClient(review_env["app"], base_url="http://review.test", raise_server_exceptions=False)
    rng = random.Random(SEED + 1)
    auth = {"Authorization": f"Bearer {review_env['tokens']['dave']}"}
    ref = task_ref(review_env["store"].review_tasks()[0].task_id)
    assert client.post(f"/api/tasks/{ref}/lease", headers=auth).status_code == 200
    segment_keys = ["id", "track", "start", "end", "label", "text", "quality", "extra"]
    routes = [f"/api/tasks/{ref}/submit", f"/api/tasks/{ref}/audit", "/api/next", f"/api/tasks/{ref}/skip",
              "/api/tasks/!!!/submit", f"/api/tasks/{ref}/lease", "/login"]
    for i in range(300):
        if i % 3 == 0:
            body = body_of({"tracks": ["activity"], "clip": {"rating": random_value(rng), "label": random_value(rng)},
                            "segments": [{k: random_value(rng) for k in rng.sample(segment_keys, rng.randrange(8))}
                                         | ({"label": rng.choice(LABELS)} if rng.random() < 0.5 else {})]})
        elif i % 3 == 1:
            body = body_of(random_value(rng))
        else:
            body = rng.randbytes(rng.randrange(1, 200))
        route = rng.choice(routes)
        r = client.post(route, content=body, headers={**auth, "Content-Type": "application/json"})
        assert r.status_code < 500, (route, body[:300], r.status_code, r.text[:500])
    for path in ("/api/queue?limit=99999999999999999999", "/api/streams?recent=-5",
                 "/api/streams?recent=99999999999999999999999", f"/media/{ref}.mp4", "/media/!!.mp4",
                 "/api/export/nope", "/api/tasks/%00"):
        r = client.get(path, headers={**auth, "Range": rng.choice(["bytes=0-", "bytes=-1", "bytes=99999999999-",
                                                                     "bytes=5-2", "nonsense"])})
        assert r.status_code < 500, (path, r.status_code, r.text[:300])
