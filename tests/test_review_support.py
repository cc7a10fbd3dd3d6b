"""Shared set-up for the review tests (imported by tests/test_review_*.py): real H.264 segments,
a store holding flagged predictions, users of every role, and the app."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from clipwatch.blobs import SegmentReader
from clipwatch.records import LabelScore, Prediction, Presegmentation, ProposedSegment, WindowScore
from clipwatch.review_policy import ReviewPolicy
from clipwatch.store import open_store, save_prediction
from clipwatch.testmedia import render_segment
from review.auth import UsersFile

LABELS = ["walking", "running", "jumping", "waving"]
ROLES = {"alice": "reviewer", "bob": "reviewer", "carol": "auditor", "dave": "admin"}


class Clock:
    """A clock the tests move (leases expire without waiting)."""

    def __init__(self, now: float | None = None):
        self.now = now or time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def review_media(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("review-media")
    segs = [render_segment(d / f"cam1/seg_{i:05d}.ts", seconds=4, size=(320, 180), gop=30, seed=i,
                           pattern=("testsrc2", "mandelbrot", "life", "testsrc2")[i % 4])
            for i in range(4)]
    return {"dir": d, "segments": segs}


def flagged_prediction(seq: int, uri: str, confidence: float, label: str, embedding, stream="cam1",
                       policy: ReviewPolicy = ReviewPolicy(sample_fraction=0.0), store=None) -> Prediction:
    second = min((1 - confidence) * 0.6, confidence * 0.9)  # top-k stays sorted
    others = [x for x in LABELS if x != label]
    top_k = [LabelScore(label=label, probability=confidence),
             LabelScore(label=others[0], probability=second),
             LabelScore(label=others[1], probability=max(0.0, 1 - confidence - second))]
    margin = confidence - second
    return Prediction(stream_id=stream, sequence=seq, segment_uri=uri, model_version="v1", label=label,
                      confidence=confidence, margin=margin, entropy=1.0, top_k=top_k, frames=[[0]],
                      device="cpu", timings_ms={}, embedding=embedding,
                      review=policy.decide(confidence, margin, label=label, stream_id=stream,
                                           sequence=seq, store=store))


# What the endpoint proposes for each flagged 4 s test clip (inference.presegment's shape).
PROPOSALS = [(0.0, 1.5, "running", 0.81), (1.5, 4.0, "waving", 0.64)]


def presegmentation() -> Presegmentation:
    windows = [WindowScore(start=t, end=t + 1.0, label="running" if t < 1.0 else "waving",
                           confidence=0.9 - 0.1 * abs(1.25 - t)) for t in np.arange(0, 3.01, 0.25)]
    return Presegmentation(windows=windows, proposals=[ProposedSegment(start=a, end=b, label=l, confidence=c)
                                                       for a, b, l, c in PROPOSALS])


def seed_store(store, segments: list[Path], n: int = 8) -> list[Prediction]:
    """n flagged predictions in two tight embedding clusters, plus two confident ones."""
    rng = np.random.default_rng(3)
    out = []
    centres = [np.eye(8)[0], np.eye(8)[1]]
    for seq in range(n):
        e = centres[seq % 2] + rng.normal(0, 0.05, 8)
        e = (e / np.linalg.norm(e)).tolist()
        conf = 0.30 + 0.03 * seq  # seq 0 is the most uncertain
        p = flagged_prediction(seq, str(segments[seq % len(segments)]), conf, LABELS[seq % 4], e)
        p.presegmentation = presegmentation()
        save_prediction(store, p)
        out.append(p)
    for seq in (n, n + 1):
        save_prediction(store, flagged_prediction(seq, str(segments[0]), 0.97, "walking", None))
    return out


@pytest.fixture
def review_env(tmp_path, review_media):
    """A store with flagged predictions, a users file with a token per role, and the app."""
    from review.app import create_app

    store = open_store(f"sqlite:///{tmp_path}/review.db")
    predictions = seed_store(store, review_media["segments"])
    users_file = tmp_path / "users.json"
    tokens = {name: UsersFile.add(users_file, name, role) for name, role in ROLES.items()}
    # erin's token expired an hour ago
    tokens["erin"] = UsersFile.add(users_file, "erin", "reviewer")
    raw = json.loads(users_file.read_text())
    for u in raw["users"]:
        if u["name"] == "erin":
            u["expires_at"] = time.time() - 3600
    users_file.write_text(json.dumps(raw))
    clock = Clock()
    app = create_app(store, users_file, LABELS, reader=SegmentReader(allowed_dirs=[review_media["dir"]]),
                     lease_seconds=300, page_size=2, secret=b"test-secret", clock=clock)
    yield {"app": app, "store": store, "tokens": tokens, "clock": clock, "predictions": predictions,
           "media": review_media, "users_file": users_file, "tmp": tmp_path}
    store.close()
