"""Queue order (uncertainty, then diversity) and agreement/consensus, as plain functions."""

from __future__ import annotations

import numpy as np
import pytest

from clipwatch.records import Annotation, ClipAnswer, LabelScore, Prediction, ReviewDecision, ReviewTask, SegmentLabel
from review.agreement import agreement, consensus
from review.queue import QueueItem, features_for, kmeans, order_queue


def task(seq: int, uncertainty: float) -> ReviewTask:
    return ReviewTask(task_id=f"s#{seq}#v", stream_id="s", sequence=seq, segment_uri="/x", model_version="v",
                      label="a", confidence=1 - uncertainty, reasons=[], uncertainty=uncertainty)


def test_centroids_of_the_uncertain_half_come_first():
    # three tight groups among the 6 most uncertain; 6 confident ones after
    rng = np.random.default_rng(0)
    centres = np.eye(3)
    items = []
    for i in range(12):
        f = centres[i % 3] + rng.normal(0, 0.01, 3)
        items.append(QueueItem(task(i, 0.9 - 0.05 * i), f))
    ordered = order_queue(items, budget=3)
    first = ordered[:3]
    assert all(i.centroid for i in first) and {i.cluster for i in first} == {0, 1, 2}
    assert {i.task.sequence % 3 for i in first} == {0, 1, 2}  # one of each group, not the top 3 by score
    assert [i.task.sequence for i in ordered[3:6]] == sorted(i.task.sequence for i in ordered[3:6])
    assert [i.task.sequence for i in ordered[6:]] == [6, 7, 8, 9, 10, 11]
    assert [i.rank for i in ordered] == list(range(1, 13))


def test_queue_without_features_is_pure_uncertainty_order():
    items = [QueueItem(task(i, u), None) for i, u in enumerate([0.2, 0.9, 0.5])]
    assert [i.task.sequence for i in order_queue(items, budget=5)] == [1, 2, 0]
    assert order_queue([], budget=3) == []


def test_kmeans_is_deterministic_and_handles_duplicates():
    x = np.array([[0, 0], [0, 0.1], [5, 5], [5, 5.1]], dtype=float)
    a1, c1 = kmeans(x, 2, seed=1)
    a2, _ = kmeans(x, 2, seed=1)
    assert (a1 == a2).all()
    assert a1[0] == a1[1] and a1[2] == a1[3] and a1[0] != a1[2]
    same = np.zeros((4, 2))
    assign, _ = kmeans(same, 3)
    assert len(assign) == 4


def _prediction(embedding=None, probs=(("a", 0.6), ("b", 0.4))) -> Prediction:
    return Prediction(stream_id="s", sequence=1, segment_uri="/x", model_version="v", label=probs[0][0],
                      confidence=probs[0][1], margin=0.2, entropy=0.6,
                      top_k=[LabelScore(label=l, probability=p) for l, p in probs], frames=[[0]],
                      device="cpu", timings_ms={}, review=ReviewDecision(needs_review=True), embedding=embedding)


def test_features_fall_back_to_probabilities_without_embeddings():
    feats, kind = features_for([_prediction([1.0, 0.0]), _prediction([0.0, 1.0])])
    assert kind == "embedding" and feats[1].tolist() == [0.0, 1.0]
    feats, kind = features_for([_prediction([1.0, 0.0]), _prediction(None, (("b", 0.7), ("c", 0.3))), None])
    assert kind == "probabilities" and feats[0].tolist() == [0.6, 0.4, 0.0]
    assert feats[1].tolist() == [0.0, 0.7, 0.3] and feats[2] is None


def ann(segments, clip_label=None, author="a", at="2026-01-01T00:00:00+00:00") -> Annotation:
    return Annotation(annotation_id=author, task_id="t", stream_id="s", sequence=1, segment_uri="/x",
                      author=author, tracks=["activity"],
                      segments=[SegmentLabel(id=f"x{i}", track="activity", start=s, end=e, label=l)
                                for i, (s, e, l) in enumerate(segments)],
                      clip=ClipAnswer(label=clip_label), accepted_at=at, submitted_at=at)


def test_agreement_is_temporal_iou_with_and_without_labels():
    a = ann([(0, 4, "run"), (6, 8, "walk")])
    b = ann([(2, 4, "run"), (6, 8, "run")])
    ag = agreement(a, b)
    assert ag.segment_iou == pytest.approx(4 / 6, abs=1e-4)
    assert ag.label_iou == pytest.approx(2 / 8, abs=1e-4)  # run: 2/6, walk: 0/2 → 2/(6+2)
    assert ag.clip_label_agree is True  # "run" covers most of both
    assert agreement(ann([(0, 1, "run")], "walk"), ann([(0, 1, "run")])).clip_label_agree is False
    assert agreement(ann([]), ann([])).segment_iou == 1.0


def test_consensus_takes_the_majority_and_the_medoid():
    a = ann([(0, 4, "run")], author="a")
    b = ann([(0, 3.5, "run")], author="b")
    c = ann([(5, 9, "walk")], author="c")
    chosen, label, summary = consensus([a, b, c])
    assert label == "run" and chosen.author in ("a", "b") and summary["majority"] == "run"
    assert summary["reviews"] == 3 and 0 < summary["mean_label_iou"] < 1
    chosen, label, summary = consensus([a])
    assert chosen is a and label == "run"


def test_without_diversity_the_order_is_uncertainty_alone():
    rng = np.random.default_rng(0)
    items = [QueueItem(task(i, 0.9 - 0.05 * i), np.eye(3)[i % 3] + rng.normal(0, 0.01, 3)) for i in range(12)]
    ordered = order_queue(items, budget=3, diverse=False)
    assert [i.task.sequence for i in ordered] == list(range(12))
    assert not any(i.centroid for i in ordered)


def test_the_service_drops_diversity_once_the_model_has_enough_reviewed_labels(tmp_path):
    """review.queue.DIVERSE_UNTIL: diversity while a model version has few reviewed labels,
    uncertainty alone after (the order benchmarks/active_learning.py found best)."""
    from clipwatch.store.sqlite import SqliteStore
    from review.queue import DIVERSE_UNTIL
    from review.service import ReviewService

    store = SqliteStore(tmp_path / "q.db")
    for i in range(6):
        store.put_review_task(task(i, 0.9 - 0.1 * i).model_copy(update={"model_version": "m1"}))
    service = ReviewService(store, ["a", "b"], timing_of=lambda uri: (10.0, 30.0), page_size=2)
    assert service._few_labels(store.review_tasks("pending"))
    for i in range(DIVERSE_UNTIL):
        store.put_review_task(task(100 + i, 0.5).model_copy(update={"model_version": "m1", "status": "reviewed"}))
    assert not service._few_labels(store.review_tasks("pending"))
    store.put_review_task(task(999, 0.95).model_copy(update={"model_version": "m2"}))
    store.put_review_task(task(998, 0.95).model_copy(update={"model_version": "m2"}))
    for i in range(6):  # a new model version, most of the queue: diversity again
        store.put_review_task(task(900 + i, 0.4).model_copy(update={"model_version": "m2"}))
    assert service._few_labels(store.review_tasks("pending"))
    store.close()
