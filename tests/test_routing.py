"""The review score and its operating point: the statistics (a bound that holds as often as it
claims, a method that refuses when it cannot certify), then the whole path on real segments —
`clipwatch evaluate --routing` fits a card, the endpoint serves it, a late temporal review."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipwatch.records import LabelScore, Prediction, ReviewDecision, RoutingSignals
from clipwatch.store.sqlite import SqliteStore
from training.routing import (Observation, choose_threshold, fit_logistic, intra_stream_correlation,
                              risk_coverage, upper_bound)

ROOT = Path(__file__).resolve().parents[1]


def _population(rng, n):
    """Scores in [0, 1] where a higher score means more often wrong: P(wrong | s) = s²."""
    s = rng.uniform(0, 1, n)
    return s, rng.uniform(0, 1, n) < s ** 2


def test_clopper_pearson_upper_bound_matches_the_closed_form_for_zero_errors():
    # With no error in n, the one-sided bound solves (1 − p)^n = delta.
    for n in (10, 114, 500):
        assert upper_bound(0, n, 0.1) == pytest.approx(1 - 0.1 ** (1 / n), rel=1e-9)
    assert upper_bound(3, 3, 0.1) == 1.0 and upper_bound(0, 0, 0.1) == 1.0
    assert upper_bound(5, 100, 0.1) > 0.05  # above the observed rate


def test_the_chosen_threshold_keeps_the_auto_accepted_error_under_alpha_as_often_as_promised():
    """300 calibrations on fresh draws: the true error of what each auto-accepts (measured on a
    large sample of the same population) exceeds alpha in at most delta of them (+ noise)."""
    rng = np.random.default_rng(0)
    alpha, delta = 0.05, 0.1
    grid = np.linspace(0, 1, 101)
    big_s, big_wrong = _population(rng, 200_000)
    violations, coverage = 0, []
    for _ in range(300):
        s, wrong = _population(rng, 800)
        fit_s, fit_wrong = _population(rng, 300)
        point = choose_threshold(grid, s, wrong, alpha, delta, fit_s, fit_wrong)
        accepted = big_s <= point["threshold"]  # threshold -1: nothing accepted, never a violation
        violations += bool(accepted.any()) and big_wrong[accepted].mean() > alpha
        coverage.append(accepted.mean())
    assert violations / 300 <= delta + 0.03
    # and it is not vacuous: P(wrong | s ≤ t) = t²/3 ≤ 5% up to t ≈ 0.39
    assert 0.2 < np.median(coverage) <= math.sqrt(3 * alpha)


def test_no_threshold_is_certified_when_the_model_is_wrong_too_often():
    rng = np.random.default_rng(1)
    s = rng.uniform(0, 1, 400)
    wrong = rng.uniform(0, 1, 400) < 0.3  # 30% wrong whatever the score
    point = choose_threshold(np.linspace(0, 1, 50), s, wrong, 0.02, 0.1)
    assert point["threshold"] == -1.0 and point["accepted"] == 0 and point["review_rate"] == 1.0


def test_errors_in_runs_widen_the_bound_by_the_design_effect():
    """Streams whose segments are all right or all wrong: ρ ≈ 1, so 40 accepted segments in 4
    streams weigh like 4 trials and certify nothing that 40 independent ones would."""
    def obs(stream, wrong):
        p = Prediction(stream_id=stream, sequence=0, segment_uri="/x", model_version="m", label="a",
                       confidence=0.9, margin=0.8, entropy=0.1, top_k=[], frames=[], device="cpu",
                       timings_ms={}, review=ReviewDecision(needs_review=False))
        return Observation(stream, p, ["b"] if wrong else ["a"])

    clustered = [obs(f"s{i}", i % 10 == 0) for i in range(20) for _ in range(10)]
    assert intra_stream_correlation(clustered) > 0.95
    independent = [obs(f"s{i}", j == 0) for i in range(20) for j in range(10)]
    assert intra_stream_correlation(independent) == 0.0
    scores = np.zeros(40)
    wrong = np.zeros(40, dtype=bool)
    streams = np.repeat([f"s{i}" for i in range(4)], 10)
    alone = choose_threshold(np.array([0.5]), scores, wrong, 0.1, 0.1)
    together = choose_threshold(np.array([0.5]), scores, wrong, 0.1, 0.1, streams=streams, rho=1.0)
    assert alone["threshold"] == 0.5 and alone["upper_bound"] < 0.1
    assert together["threshold"] == -1.0  # 4 effective trials cannot show an error under 10%


def test_logistic_regression_finds_the_signal_that_separates_right_from_wrong():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, 3))
    y = (rng.uniform(size=600) < 1 / (1 + np.exp(-(2.0 * x[:, 1] - 1.0)))).astype(float)
    coef, intercept = fit_logistic(x, y, l2=0.1)
    assert coef[1] == pytest.approx(2.0, abs=0.4) and abs(coef[0]) < 0.3 and abs(coef[2]) < 0.3
    assert intercept == pytest.approx(-1.0, abs=0.3)


def test_risk_coverage_of_an_informative_score_beats_a_random_one():
    rng = np.random.default_rng(3)
    s, wrong = _population(rng, 2000)
    good, random = risk_coverage(s, wrong), risk_coverage(rng.uniform(size=2000), wrong)
    assert good["aurc"] < random["aurc"]
    assert good["review_rate"][-1] == 0.0 and good["error"][-1] == pytest.approx(wrong.mean(), abs=1e-4)


def test_novelty_is_the_distance_to_the_nearest_training_clips(tmp_path):
    from inference.signals import ReferenceBank, ReferenceError

    rng = np.random.default_rng(4)
    centre = np.array([1.0, 0.0, 0.0])
    clips = centre + 0.05 * rng.normal(size=(40, 3))  # class 0 around one direction
    other = np.array([0.0, 1.0, 0.0]) + 0.05 * rng.normal(size=(40, 3))  # class 1 around another
    bank = ReferenceBank.build(np.vstack([clips, other]), np.array([0] * 40 + [1] * 40), "m1", per_class=30)
    assert len(bank.labels) == 60 and np.allclose(np.linalg.norm(bank.embeddings, axis=1), 1)
    bank.save(tmp_path)
    bank = ReferenceBank.load(tmp_path, "m1")
    near, far = bank.novelty(centre), bank.novelty(np.array([0.0, 0.0, 1.0]))
    assert near < 0.01 and far > 0.9
    # near the training data, but not near the class it was given: a confusion
    assert bank.class_novelty(centre, 0) < 0.01 and bank.class_novelty(centre, 1) > 0.9
    with pytest.raises(ReferenceError, match="made for model m1, not m2"):
        ReferenceBank.load(tmp_path, "m2")
    with pytest.raises(ReferenceError, match="embedding of 4 values"):
        bank.novelty(np.ones(4))


# --------------------------------------------------------------------------- on real segments

def test_evaluate_routing_writes_the_card_the_report_and_the_figure(routed_model):
    model_dir, report = routed_model
    card = json.loads((model_dir / "model.json").read_text())["routing"]
    assert card["features"][:4] == ["doubt", "margin", "entropy", "novelty"]
    assert card["alpha"] == 0.2 and card["delta"] == 0.2
    assert (model_dir / "reference.npz").is_file()
    saved = json.loads((model_dir / "evaluation" / "routing.json").read_text())
    assert saved["segments"] == report["segments"] and sum(saved["segments"].values()) == 24
    assert set(saved["risk_coverage"]) == {"combined", "confidence_only"}
    assert set(saved["aurc_without"]) == set(card["features"])
    png = (model_dir / "evaluation" / "routing.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # the threshold certifies the bound on the calibration split, or reviews everything
    point = saved["operating_point"]
    if point["threshold"] >= 0:
        assert point["upper_bound"] <= card["alpha"]


def test_the_endpoint_serves_the_operating_point_with_signals_and_says_so(routed_model, tmp_path):
    from clipwatch.blobs import SegmentReader
    from inference.model import load_classifier
    from inference.predictor import Endpoint
    from training.routing import find_streams, read_truth

    model_dir, _ = routed_model
    classifier = load_classifier(model_dir)
    assert classifier.reference is not None and classifier.card.routing is not None
    assert classifier.routing_status.startswith("fitted review score")
    streams = find_streams(model_dir.parent / "streams")
    endpoint = Endpoint(classifier, SegmentReader(allowed_dirs=(streams[0].parent.resolve(),)),
                        store=None, propose=False)
    try:
        from clipwatch.records import InvocationRequest

        row = read_truth(streams[0])[0]
        p = endpoint.invoke(InvocationRequest(uri=str(streams[0] / row["file"]), stream_id="s", sequence=0))
    finally:
        endpoint.close()
    assert p.signals.novelty is not None and 0 <= p.signals.novelty <= 2
    assert 0 <= p.signals.class_novelty <= 2 and p.signals.motion > 0
    assert p.review.score == pytest.approx(classifier.card.routing.score(classifier.card.routing.vector(p)), abs=1e-5)
    assert p.review.needs_review == (p.review.score > classifier.card.routing.threshold)
    assert p.review.uncertainty == p.review.score  # the queue's first key is the review score


def test_a_model_without_a_reference_bank_falls_back_to_thresholds_and_says_so(routed_model, tmp_path):
    import shutil

    from inference.model import load_classifier

    model_dir, _ = routed_model
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    (copy / "reference.npz").unlink()
    classifier = load_classifier(copy)
    assert classifier.reference is None
    assert classifier.routing_status.startswith("fallback thresholds")
    (copy / "reference.npz").write_bytes(b"not an npz")  # unreadable: logged, still served
    assert load_classifier(copy).reference is None


def test_evaluate_routing_says_what_is_wrong_with_unusable_data(tmp_path, routed_model):
    model_dir, _ = routed_model
    run = subprocess.run([sys.executable, "-m", "clipwatch.cli", "evaluate", "--model", str(model_dir),
                          "--routing", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "no stream folders with a ground_truth.jsonl" in run.stderr
    (tmp_path / "cam").mkdir()
    (tmp_path / "cam" / "ground_truth.jsonl").write_text('{"file": "seg_00000.ts"}\n')
    run = subprocess.run([sys.executable, "-m", "clipwatch.cli", "evaluate", "--model", str(model_dir),
                          "--routing", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "ground_truth.jsonl:1" in run.stderr and "labels" in run.stderr


def test_segments_that_are_missing_or_do_not_decode_are_named_and_the_rest_is_used(routed_model, tmp_path):
    import shutil

    from clipwatch.blobs import SegmentReader
    from inference.model import load_classifier
    from inference.predictor import Endpoint
    from training.routing import collect, find_streams

    model_dir, _ = routed_model
    stream = tmp_path / "cam"
    shutil.copytree(find_streams(model_dir.parent / "streams")[0], stream)
    (stream / "seg_00001.ts").write_bytes(b"\x47" + bytes(5000))  # a sync byte, then nothing
    (stream / "seg_00002.ts").unlink()
    endpoint = Endpoint(load_classifier(model_dir), SegmentReader(allowed_dirs=(tmp_path.resolve(),)),
                        store=None, propose=False)
    skipped: dict[str, str] = {}
    try:
        observations = collect(endpoint, [stream], skipped=skipped)
    finally:
        endpoint.close()
    assert [o.prediction.sequence for o in observations] == [0]
    assert set(skipped) == {str((stream / f"seg_0000{i}.ts").resolve()) for i in (1, 2)}
    assert all(reason for reason in skipped.values())


def _stored(store, seq, label, review=False):
    from clipwatch.store import save_prediction

    p = Prediction(stream_id="cam", sequence=seq, segment_uri=f"/x/seg_{seq}.ts", model_version="m1",
                   label=label, confidence=0.95, margin=0.9, entropy=0.1,
                   top_k=[LabelScore(label=label, probability=0.95)], frames=[[0]], device="cpu",
                   timings_ms={}, signals=RoutingSignals(motion=0.1),
                   review=ReviewDecision(needs_review=review, kind="uncertain" if review else None))
    save_prediction(store, p)
    return p


@pytest.mark.parametrize("arrival,backend", [("in order", "sqlite"), ("middle last", "sqlite"),
                                             ("middle last", "dynamodb")])
def test_a_segment_both_neighbours_contradict_goes_to_review_late(tmp_path, arrival, backend, demo_classifier,
                                                                   request):
    from clipwatch.blobs import SegmentReader
    from inference.predictor import Endpoint

    store = SqliteStore(tmp_path / "p.db") if backend == "sqlite" else request.getfixturevalue("dynamo_store")
    endpoint = Endpoint(demo_classifier, SegmentReader(), store, propose=False)
    try:
        order = [(0, "walking"), (1, "running"), (2, "walking")]
        if arrival == "middle last":
            order = [order[0], order[2], order[1]]
        for seq, label in order:
            endpoint._check_neighbours(_stored(store, seq, label))
        middle = store.get_prediction("cam", 1)
        assert middle.review.needs_review and middle.review.kind == "temporal"
        assert "between two segments labelled walking" in middle.review.reasons[-1]
        tasks = store.review_tasks()
        assert [(t.sequence, t.kind) for t in tasks] == [(1, "temporal")]
        assert store.get_review_task(tasks[0].task_id).reasons == middle.review.reasons
        # agreeing neighbours, or a middle already routed, change nothing
        endpoint._check_neighbours(_stored(store, 3, "walking"))
        _stored(store, 5, "jumping", review=True)
        endpoint._check_neighbours(_stored(store, 6, "walking"))
        endpoint._check_neighbours(_stored(store, 4, "walking"))
        assert sorted(t.sequence for t in store.review_tasks()) == [1, 5]
    finally:
        endpoint.close()
        store.close()


def test_a_second_clip_is_run_only_where_a_review_score_reads_it(routed_model, tmp_path):
    """A doubtful one-clip segment costs a second forward for its disagreement signal: worth it
    for a model whose review score uses it, not for one on the fallback thresholds (every model
    a user brings), unless asked (`clipwatch evaluate --routing` collects it to fit a score)."""
    from clipwatch.blobs import SegmentReader
    from clipwatch.records import InvocationRequest
    from inference.model import load_classifier
    from inference.predictor import Endpoint
    from training.routing import find_streams

    model_dir, _ = routed_model
    streams = model_dir.parent / "streams"
    segments = [s for stream in find_streams(streams) for s in sorted(stream.glob("*.ts"))]

    def disagreements(second_clip=None, routed=True):
        classifier = load_classifier(model_dir)
        if not routed:
            classifier.card.routing = None
        endpoint = Endpoint(classifier, SegmentReader(allowed_dirs=(streams.resolve(),)), store=None,
                            propose=False, second_clip=second_clip)
        try:
            return [endpoint.invoke(InvocationRequest(uri=str(s))).signals.disagreement for s in segments]
        finally:
            endpoint.close()

    routed = disagreements()
    assert any(d is not None for d in routed), "no doubtful segment here: nothing to compare"
    assert disagreements(routed=False) == [None] * len(segments)
    assert disagreements(second_clip=True, routed=False) == routed
