"""The routing policy: thresholds (global and per class), entropy, the accuracy-check sample,
the per-stream budget (against both stores), its configuration, and the endpoint applying it."""

from __future__ import annotations

import pytest

from clipwatch.records import LabelScore, Prediction
from clipwatch.review_policy import ReviewPolicy, Thresholds, sample_draw
from clipwatch.store import open_store, save_prediction


def test_thresholds_give_every_reason():
    p = ReviewPolicy(min_confidence=0.6, min_margin=0.2, max_entropy=1.0, sample_fraction=0)
    d = p.decide(0.5, 0.1, entropy=1.2, label="running", stream_id="s", sequence=1)
    assert d.needs_review and d.kind == "uncertain" and d.uncertainty == pytest.approx(0.5)
    assert d.reasons == ["confidence 0.500 < 0.6", "margin 0.100 < 0.2", "entropy 1.200 > 1.0"]
    ok = p.decide(0.9, 0.8, entropy=0.3, label="running", stream_id="s", sequence=1)
    assert not ok.needs_review and ok.reasons == [] and ok.kind is None


def test_beside_a_review_score_only_the_thresholds_set_apply():
    """The fallback defaults stand in for a missing operating point; thresholds an operator sets
    apply beside the score (they can only add reviews)."""
    scored = (0.01, [])  # the score says: auto-accept
    assert not ReviewPolicy(sample_fraction=0).decide(0.3, 0.05, scored=scored).needs_review
    assert ReviewPolicy(sample_fraction=0).decide(0.3, 0.05).reasons == ["confidence 0.300 < 0.6",
                                                                          "margin 0.050 < 0.2"]
    strict = ReviewPolicy(min_confidence=0.9, sample_fraction=0)
    d = strict.decide(0.85, 0.8, scored=scored)
    assert d.needs_review and d.reasons == ["confidence 0.850 < 0.9"] and d.score == 0.01
    flagged = ReviewPolicy(sample_fraction=0).decide(0.99, 0.98, scored=(0.4, ["review score 0.400 > 0.3"]))
    assert flagged.needs_review and flagged.uncertainty == 0.4 and flagged.reasons == ["review score 0.400 > 0.3"]


def test_per_class_thresholds_override_the_global_ones():
    p = ReviewPolicy(per_class={"running": Thresholds(min_confidence=0.95)}, sample_fraction=0)
    assert p.decide(0.9, 0.8, label="running").reasons == ["confidence 0.900 < 0.95 for running"]
    assert not p.decide(0.9, 0.8, label="walking").needs_review
    assert p.thresholds("running") == Thresholds(0.95, 0.2, None)


def test_a_fixed_fraction_of_confident_predictions_is_sampled_reproducibly():
    p = ReviewPolicy(sample_fraction=0.05)
    drawn = [seq for seq in range(4000) if p.decide(0.99, 0.98, stream_id="cam", sequence=seq).kind == "sample"]
    assert 150 <= len(drawn) <= 250  # 5% of 4000 = 200
    again = [seq for seq in range(4000) if p.decide(0.99, 0.98, stream_id="cam", sequence=seq).needs_review]
    assert drawn == again  # a repeated event draws the same segments
    d = p.decide(0.99, 0.98, stream_id="cam", sequence=drawn[0])
    assert "accuracy check" in d.reasons[0]
    assert 0 <= sample_draw("cam", 1) < 1 and sample_draw("cam", 1) != sample_draw("cam", 2)
    assert not ReviewPolicy(sample_fraction=0).decide(0.99, 0.98, stream_id="cam", sequence=drawn[0]).needs_review


def _prediction(seq: int, policy: ReviewPolicy, store, stream="cam", now=None) -> Prediction:
    review = policy.decide(0.3, 0.05, label="running", stream_id=stream, sequence=seq, store=store, now=now)
    return Prediction(stream_id=stream, sequence=seq, segment_uri=f"/x/{seq}.ts", model_version="v1",
                      label="running", confidence=0.3, margin=0.05, entropy=1.0,
                      top_k=[LabelScore(label="running", probability=0.3)], frames=[[0]], device="cpu",
                      timings_ms={}, review=review)


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/p.db") if request.param == "sqlite" else request.getfixturevalue("dynamo_store")
    yield s
    s.close()


def test_budget_caps_tasks_per_stream_per_rolling_hour(store):
    policy = ReviewPolicy(budget_per_hour=2, sample_fraction=0)
    made = [save_prediction(store, _prediction(seq, policy, store)) for seq in range(4)]
    assert [t is not None for t in made] == [True, True, False, False]
    over = store.get_prediction("cam", 3).review
    assert not over.needs_review and over.budget_per_hour == 2
    assert "budget of 2 tasks/hour for this stream is spent (2 in the last hour)" in over.reasons[-1]
    assert save_prediction(store, _prediction(0, policy, store, stream="other")) is not None  # per stream
    import time

    later = time.time() + 3700  # an hour on, the budget is free again
    assert _prediction(9, policy, store, now=later).review.needs_review


def test_policy_from_environment():
    p = ReviewPolicy.from_env({
        "CLIPWATCH_REVIEW_MIN_CONFIDENCE": "0.7", "CLIPWATCH_REVIEW_MIN_MARGIN": "0",
        "CLIPWATCH_REVIEW_MAX_ENTROPY": "1.5", "CLIPWATCH_REVIEW_SAMPLE_FRACTION": "0",
        "CLIPWATCH_REVIEW_BUDGET_PER_HOUR": "30", "CLIPWATCH_REVIEW_REVIEWS_REQUIRED": "2",
        "CLIPWATCH_REVIEW_CLASS_THRESHOLDS": '{"running": {"min_confidence": 0.9}}'})
    assert (p.min_confidence, p.min_margin, p.max_entropy, p.sample_fraction, p.budget_per_hour,
            p.reviews_required) == (0.7, 0.0, 1.5, 0.0, 30, 2)
    assert p.per_class == {"running": Thresholds(min_confidence=0.9)}
    assert ReviewPolicy.from_env({}) == ReviewPolicy()
    for env, message in [({"CLIPWATCH_REVIEW_MIN_CONFIDENCE": "high"}, "expected a float"),
                         ({"CLIPWATCH_REVIEW_CLASS_THRESHOLDS": "[1]"}, "CLASS_THRESHOLDS"),
                         ({"CLIPWATCH_REVIEW_CLASS_THRESHOLDS": '{"a": {"bogus": 1}}'}, "CLASS_THRESHOLDS"),
                         ({"CLIPWATCH_REVIEW_SAMPLE_FRACTION": "1.5"}, "SAMPLE_FRACTION"),
                         ({"CLIPWATCH_REVIEW_REVIEWS_REQUIRED": "0"}, "REVIEWS_REQUIRED")]:
        with pytest.raises(ValueError, match=message):
            ReviewPolicy.from_env(env)


def test_the_endpoint_applies_the_policy_at_write_time(tiny_classifier, media, tmp_path):
    """The real endpoint on real segments: random weights are unsure, so both segments are
    routed, until the stream's budget of one task an hour is spent."""
    from clipwatch.blobs import SegmentReader
    from clipwatch.records import InvocationRequest
    from inference.predictor import Endpoint

    store = open_store(f"sqlite:///{tmp_path}/e.db")
    policy = ReviewPolicy(min_confidence=0.99, budget_per_hour=1, sample_fraction=0)
    endpoint = Endpoint(tiny_classifier, SegmentReader(allowed_dirs=[media["dir"]]), store, policy)
    first = endpoint.invoke(InvocationRequest(uri=str(media["segment"]), stream_id="cam", sequence=1))
    second = endpoint.invoke(InvocationRequest(uri=str(media["segment2"]), stream_id="cam", sequence=2))
    assert first.review.needs_review and first.review.kind == "uncertain"
    assert not second.review.needs_review and "budget" in second.review.reasons[-1]
    (task,) = store.review_tasks()
    assert (task.sequence, task.kind, task.uncertainty) == (1, "uncertain", pytest.approx(1 - first.confidence, abs=1e-5))
    store.close()
