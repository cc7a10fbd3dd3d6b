"""The order in which reviewers see tasks: uncertainty first, de-duplicated by diversity while
the model has few reviewed labels.

Active selection as in the seed's video-annotation work: take the most uncertain half of the
candidates, cluster it in the model's feature space into ``b`` clusters (``b`` = the budget, here
the page a reviewer works through), and serve the member nearest each cluster centre first —
so the first ``b`` tasks are uncertain *and* different from each other, instead of ten
near-identical clips of the same confusing moment. The rest of the uncertain half follows by
uncertainty, then the more certain half (which includes the accuracy-check samples).

Measured (``benchmarks/active_learning.py``, retraining after every 10 reviews): diversity buys
the most while labels are few (held-out 0.70 after 30 reviews, against 50 by uncertainty alone),
uncertainty alone from a few dozen labels on (0.79 after 100 reviews, where diversity needed
180); switching after ``DIVERSE_UNTIL`` reviewed labels of the model beat both over the whole
curve (mean accuracy 0.797 against 0.767 and 0.755). So the diversity stage runs only until the
model version has that many reviewed labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from clipwatch.records import Prediction, ReviewTask

DIVERSE_UNTIL = 50  # reviewed labels of a model version, after which uncertainty alone orders


@dataclass
class QueueItem:
    task: ReviewTask
    features: Optional[np.ndarray]
    rank: int = 0
    cluster: Optional[int] = None
    centroid: bool = False  # served first as its cluster's representative


def features_for(predictions: Sequence[Optional[Prediction]]) -> tuple[list[Optional[np.ndarray]], str]:
    """The vectors to cluster, and which kind they are. The clip embedding when every
    prediction has one of the same size; otherwise (an endpoint that does not fill
    ``Prediction.embedding`` yet, or mixed model versions) the calibrated top-k probability
    vector over the union of labels seen — a coarser space, but one every prediction has."""
    embeds = [p.embedding if p is not None else None for p in predictions]
    if embeds and all(e for e in embeds) and len({len(e) for e in embeds}) == 1:
        return [np.asarray(e, dtype=np.float64) for e in embeds], "embedding"
    labels = sorted({s.label for p in predictions if p is not None for s in p.top_k})
    index = {label: i for i, label in enumerate(labels)}
    out: list[Optional[np.ndarray]] = []
    for p in predictions:
        if p is None:
            out.append(None)
            continue
        v = np.zeros(len(labels))
        for s in p.top_k:
            v[index[s.label]] = s.probability
        out.append(v)
    return out, "probabilities"


def _sq_distances(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared distances of every row of x to every centre, via one matrix product (the
    broadcast form needs n·k·d memory: 2000 tasks × 10 centres × 2048 dims)."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)


def kmeans(x: np.ndarray, k: int, seed: int = 0, iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding; deterministic for a seed. Returns (assignment,
    centres)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    centres = [x[rng.integers(n)]]
    d2 = _sq_distances(x, np.asarray(centres))[:, 0]
    for _ in range(1, k):
        total = d2.sum()
        # all remaining points coincide with a centre: any point will do
        nxt = x[rng.choice(n, p=d2 / total)] if total > 0 else x[rng.integers(n)]
        centres.append(nxt)
        d2 = np.minimum(d2, _sq_distances(x, nxt[None])[:, 0])
    c = np.asarray(centres, dtype=np.float64)
    assign = np.zeros(n, dtype=int)
    for it in range(iterations):
        new = _sq_distances(x, c).argmin(1)
        if it and np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c[j] = members.mean(0)
    return assign, c


def order_queue(items: list[QueueItem], budget: int, seed: int = 0, diverse: bool = True) -> list[QueueItem]:
    """``diverse`` False: by uncertainty alone (a model with enough reviewed labels)."""
    by_uncertainty = sorted(items, key=lambda i: (-i.task.uncertainty, i.task.margin,
                                                  i.task.created_at, i.task.task_id))
    half = by_uncertainty[:math.ceil(len(items) / 2)]
    clusterable = [i for i in half if i.features is not None]
    b = min(budget, len(clusterable)) if diverse else 0
    first: list[QueueItem] = []
    if b > 0:
        x = np.stack([i.features for i in clusterable])
        assign, centres = kmeans(x, b, seed)
        for j in range(b):
            members = [(float(((i.features - centres[j]) ** 2).sum()), n)
                       for n, i in enumerate(clusterable) if assign[n] == j]
            for _, n in members:
                clusterable[n].cluster = j
            if members:
                rep = clusterable[min(members)[1]]
                rep.centroid = True
                first.append(rep)
        first.sort(key=lambda i: by_uncertainty.index(i))
    chosen = {id(i) for i in first}
    ordered = first + [i for i in by_uncertainty if id(i) not in chosen]
    for rank, item in enumerate(ordered, start=1):
        item.rank = rank
    return ordered
