"""Clip features of a frozen pretrained network, computed once per clip and cached.

Fine-tuning DeepMind's I3D end to end takes a GPU; on a 2-core CPU a forward is ~0.3 s and a
backward several times that, per clip, per epoch. With the backbone frozen (the seed's transfer
learning with ``freeze`` throughout), each clip's pooled features are the same every epoch: they
are computed once with the serving runtime, kept on disk keyed by model version, clip file and
input contract, and the new classifier trains on the vectors in seconds. Training sets that
share clips (10, 50, 250 a class from one dataset) share the work.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from clipwatch.registry import cache_home

from .datasets import ClipDataset, iterate_batches


def _key(version: str, dataset: ClipDataset, index: int) -> str:
    r = dataset.records[index]
    stat = r.path.stat()
    spec = dataset.spec.model_dump_json()
    text = json.dumps([version, str(r.path.resolve()), stat.st_size, stat.st_mtime_ns,
                       r.window, spec])
    return hashlib.sha1(text.encode()).hexdigest()


def clip_features(classifier, dataset: ClipDataset, batch_size: int = 4, progress=None,
                  skipped: dict[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D) float32, labels (N,)) for the clips that decode, in record order; the
    others are left out and named in ``skipped``. ``progress``: a rich Progress, or None."""
    folder = cache_home() / "features" / classifier.card.version
    folder.mkdir(parents=True, exist_ok=True)
    keys = [_key(classifier.card.version, dataset, i) for i in range(len(dataset))]
    found: dict[int, np.ndarray] = {}
    for i, key in enumerate(keys):
        f = folder / f"{key}.npy"
        if f.is_file():
            found[i] = np.load(f)
    todo = [i for i in range(len(dataset)) if i not in found]
    task = progress.add_task(f"features of {len(todo)} clips ({len(found)} cached)",
                             total=len(todo)) if progress is not None and todo else None
    with ThreadPoolExecutor(2) as pool:
        for indices, x, _ in iterate_batches(dataset, todo, batch_size, pool, 0, skipped,
                                             with_indices=True):
            for i, v in zip(indices, classifier.infer(x)[1].astype(np.float32)):
                found[i] = v
                tmp = folder / f".{keys[i]}.tmp.npy"
                np.save(tmp, v)
                tmp.replace(folder / f"{keys[i]}.npy")
            if task is not None:
                progress.advance(task, len(indices))
    order = sorted(found)
    if not order:
        return np.zeros((0, 0), np.float32), np.zeros(0, int)
    return np.stack([found[i] for i in order]), np.array([dataset.records[i].label for i in order])
