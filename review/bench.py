"""Figures for the README: how long the queue takes to order N pending tasks (k-means on
2048-d embeddings, as I3D-R50's), and how long a clip takes to become playable (remux + motion
curve) for a 10 s 1280×720 segment. Run: python -m review.bench"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from clipwatch.blobs import SegmentReader
from clipwatch.records import ReviewTask
from clipwatch.testmedia import render_segment

from .media import MediaCache
from .queue import QueueItem, order_queue


def queue_seconds(n: int, dim: int = 2048, budget: int = 10, repeat: int = 3) -> float:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(n, dim))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    best = float("inf")
    for _ in range(repeat):
        items = [QueueItem(ReviewTask(task_id=str(i), stream_id="s", sequence=i, segment_uri="/x", model_version="v",
                                      label="a", confidence=float(c), reasons=[], uncertainty=1 - float(c)), f)
                 for i, (c, f) in enumerate(zip(rng.uniform(0.2, 0.6, n), feats))]
        t = time.perf_counter()
        order_queue(items, budget)
        best = min(best, time.perf_counter() - t)
    return best


def media_seconds() -> float:
    with tempfile.TemporaryDirectory() as d:
        seg = render_segment(Path(d) / "seg_00001.ts")
        cache = MediaCache(SegmentReader(allowed_dirs=[d]))
        t = time.perf_counter()
        cache.get(str(seg))
        return time.perf_counter() - t


def main() -> None:
    out = {f"queue_order_{n}_tasks_s": round(queue_seconds(n), 3) for n in (100, 500, 2000)}
    out["clip_ready_10s_720p_s"] = round(media_seconds(), 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
