"""How much two people agree on a clip, and what several reviews agree on.

Segment IoU is temporal: the labelled time both marked over the time either marked (labels
ignored), so boundaries drawn a little differently still score high. Label IoU counts only
time both gave the same label. With several independent reviews, the consensus clip label is the
majority, and the consensus annotation is the one that agrees best with all the others (the
medoid), so exports carry a real person's segments rather than an average nobody drew.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Optional

from clipwatch.records import Agreement, Annotation

Interval = tuple[float, float]


def _union(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def _length(intervals: list[Interval]) -> float:
    return sum(b - a for a, b in intervals)


def _intersection(a: list[Interval], b: list[Interval]) -> float:
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0.0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def _iou(a: list[Interval], b: list[Interval]) -> Optional[float]:
    inter = _intersection(a, b)
    union = _length(a) + _length(b) - inter
    return inter / union if union > 0 else None


def agreement(a: Annotation, b: Annotation) -> Agreement:
    seg = _iou(_union((s.start, s.end) for s in a.segments),
               _union((s.start, s.end) for s in b.segments))
    labels = {s.label for s in a.segments} | {s.label for s in b.segments}
    inter = union = 0.0
    for label in labels:
        ua = _union((s.start, s.end) for s in a.segments if s.label == label)
        ub = _union((s.start, s.end) for s in b.segments if s.label == label)
        i = _intersection(ua, ub)
        inter += i
        union += _length(ua) + _length(ub) - i
    # two reviews that both mark nothing agree completely
    return Agreement(segment_iou=round(1.0 if seg is None else seg, 4),
                     label_iou=round(inter / union if union > 0 else 1.0, 4),
                     clip_label_agree=a.clip_label() == b.clip_label())


def consensus(annotations: list[Annotation]) -> tuple[Annotation, Optional[str], dict]:
    """The consensus annotation, the majority clip label and a summary of pairwise agreement."""
    if len(annotations) == 1:
        return annotations[0], annotations[0].clip_label(), {"reviews": 1}
    scores = {a.annotation_id: 0.0 for a in annotations}
    pairs = []
    for i, a in enumerate(annotations):
        for b in annotations[i + 1:]:
            ag = agreement(a, b)
            pairs.append(ag)
            scores[a.annotation_id] += ag.label_iou
            scores[b.annotation_id] += ag.label_iou
    votes = Counter(a.clip_label() for a in annotations if a.clip_label())
    top = votes.most_common()
    majority = top[0][0] if top and (len(top) == 1 or top[0][1] > top[1][1]) else None
    # the medoid among those who voted with the majority (all, when there is no majority)
    pool = [a for a in annotations if majority is None or a.clip_label() == majority]
    medoid = max(pool, key=lambda a: (scores[a.annotation_id], a.submitted_at))
    label = majority or medoid.clip_label()
    summary = {"reviews": len(annotations), "majority": majority,
               "mean_segment_iou": round(sum(p.segment_iou for p in pairs) / len(pairs), 4),
               "mean_label_iou": round(sum(p.label_iou for p in pairs) / len(pairs), 4),
               "clip_label_agreement": round(sum(p.clip_label_agree for p in pairs) / len(pairs), 4)}
    return medoid, label, summary
