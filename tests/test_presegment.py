"""Pre-segmentation: windows over the segment, runs of window labels smoothed into proposals
with frame boundaries, on the demo model and real H.264; the endpoint proposes only for the
segments it sends to review; a segment it cannot window gets none, with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipwatch.blobs import SegmentReader
from clipwatch.records import InvocationRequest, Presegmentation, ProposedSegment
from clipwatch.review_policy import ReviewPolicy
from clipwatch.store import open_store, save_prediction
from inference.predictor import Endpoint
from inference.presegment import MAX_WINDOWS, presegment, proposals, smooth, snap_to_cut, window_starts
from review.effort import Span, from_proposals, from_scratch
from training.synth import write_activity_segment

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


def one_hot(labels: list[int], classes: int = 3, p: float = 0.8) -> np.ndarray:
    out = np.full((len(labels), classes), (1 - p) / (classes - 1))
    out[np.arange(len(labels)), labels] = p
    return out


def test_windows_tile_the_segment_a_quarter_span_apart_and_stay_bounded():
    starts = window_starts(300, 31)
    assert starts[:3] == [0, 7, 14] and starts[-1] == 300 - 31
    assert len(window_starts(30 * 60, 31)) == MAX_WINDOWS  # a minute-long segment
    assert window_starts(20, 31) == [] and window_starts(31, 31) == [0]


@pytest.mark.parametrize("labels, expected", [
    ([0] * 6 + [1] + [0] * 6, [0] * 13),  # a blip inside one activity
    ([0] * 6 + [2] * 4 + [1] * 6, [0] * 8 + [1] * 8),  # the windows straddling a change, split
    ([2] + [0] * 8, [0] * 9),  # a half-seen activity at the edge
    ([0] * 6 + [1] * 6, [0] * 6 + [1] * 6),  # long runs stay
])
def test_smoothing(labels, expected):
    assert smooth(one_hot(labels), min_windows=5).tolist() == expected


def test_proposals_cover_the_clip_with_boundaries_on_frames():
    starts = window_starts(300, 31)
    labels = [0 if s + 15 < 140 else 1 for s in starts]
    probs = one_hot(labels)
    out = proposals(probs, starts, 31, 300, 30.0, ["a", "b", "c"])
    assert [(p.label, p.start, p.end) for p in out][0][:2] == ("a", 0.0) and out[-1].end == 10.0
    assert [p.label for p in out] == ["a", "b"] and out[0].end == out[1].start
    assert abs(out[0].end * 30 - 140) <= 4 and (out[0].end * 30) % 1 < 1e-6
    assert out[0].confidence == pytest.approx(0.8)


def test_a_boundary_snaps_to_a_cut_near_it_and_only_to_a_cut():
    at = np.arange(1, 300, 2)
    diffs = np.full(len(at), 3.0)
    diffs[at == 121] = 60.0  # a camera switch
    assert snap_to_cut(128, (at, diffs), 15) == 121
    assert snap_to_cut(150, (at, diffs), 15) == 150  # too far from it
    diffs[at == 121] = 9.0  # a busy moment, not a cut
    assert snap_to_cut(128, (at, diffs), 15) == 128
    starts = window_starts(300, 31)
    probs = one_hot([0 if s + 15 < 128 else 1 for s in starts])
    diffs[at == 121] = 60.0
    (a, b) = proposals(probs, starts, 31, 300, 30.0, ["a", "b", "c"], changes=(at, diffs))
    assert a.end == b.start == round(121 / 30, 3)


@pytest.fixture(scope="module")
def demo():
    from inference.model import load_classifier

    return load_classifier(DEMO)


@pytest.fixture(scope="module")
def three_activities(tmp_path_factory):
    path = tmp_path_factory.mktemp("preseg") / "seg_00001.ts"
    truth = write_activity_segment(path, [("moving_right", 3.0), ("rotating", 4.0), ("bouncing", 3.0)],
                                   seed=3, size=(320, 180))
    return path, truth


def test_the_demo_model_finds_the_activities_and_where_they_change(demo, three_activities):
    path, truth = three_activities
    ps = presegment(path.read_bytes(), demo.infer, demo.classes, demo.card.input, demo.card.temperature)
    assert ps.note == "" and len(ps.windows) == len(window_starts(300, 31))
    assert [p.label for p in ps.proposals] == [t["label"] for t in truth]
    for p, t in zip(ps.proposals[1:], truth[1:]):
        assert abs(p.start - t["start"]) * 30 <= 20  # frames
    spans = [Span(t["start"], t["end"], t["label"]) for t in truth]
    proposed = [Span(p.start, p.end, p.label) for p in ps.proposals]
    assert from_proposals(spans, proposed, 30.0, 10.0, "rotating").edits < from_scratch(spans, "rotating", 10.0, 30.0).edits


def test_what_cannot_be_windowed_gets_no_proposals_and_says_why(demo, media):
    short = presegment(media["short"].read_bytes(), demo.infer, demo.classes, demo.card.input)
    assert short.proposals == [] and "8 frames; one window of the model needs 31" in short.note
    garbage = presegment(media["garbage"].read_bytes(), demo.infer, demo.classes, demo.card.input)
    assert garbage.proposals == [] and garbage.note.startswith("no proposals: segment is not decodable video")


def test_simulated_reviewer_counts():
    truth = [Span(0, 3, "a"), Span(3, 10, "b")]
    scratch = from_scratch(truth, "a", 10.0, 30.0)
    assert (scratch.drawn, scratch.boundary_moves, scratch.label_changes, scratch.edits) == (2, 2, 1, 5)
    good = from_proposals(truth, [Span(0, 3.033, "a"), Span(3.033, 10, "b")], 30.0, 10.0, "a")
    assert good.edits == 1 and good.boundary_error_frames == pytest.approx([1, 1], abs=0.02)  # accept all
    wrong = from_proposals(truth, [Span(0, 4, "a"), Span(4, 10, "c"), Span(9, 10, "b")], 30.0, 10.0, "a")
    assert (wrong.boundary_moves, wrong.label_changes, wrong.deleted, wrong.edits) == (2, 1, 1, 5)


def test_the_endpoint_proposes_after_answering_and_only_for_segments_going_to_review(demo, three_activities, tmp_path):
    """The prediction is answered and stored first; the proposals follow on the stored
    prediction. A confident segment, or an endpoint run with propose=False, gets none."""
    path, _ = three_activities
    reader = SegmentReader(allowed_dirs=[path.parent])
    always = ReviewPolicy(min_confidence=1.01, sample_fraction=0.0)
    never = ReviewPolicy(min_confidence=0.0, min_margin=0.0, sample_fraction=0.0)
    for k, (policy, propose, expected) in enumerate(((always, True, True), (never, True, False),
                                                      (always, False, False))):
        store = open_store(f"sqlite:///{tmp_path}/p{k}.db")
        endpoint = Endpoint(demo, reader, store, policy, propose=propose)
        try:
            p = endpoint.invoke(InvocationRequest(uri=str(path), stream_id="cam", sequence=1))
            assert p.presegmentation is None and "presegment" not in p.timings_ms
            assert p.review.needs_review == (policy is always)
        finally:
            endpoint.close()  # finishes the proposals in hand
        stored = store.get_prediction("cam", 1).presegmentation
        assert (stored is not None) == expected
        if expected:
            assert [x.label for x in stored.proposals] == ["moving_right", "rotating", "bouncing"]


def test_proposals_join_the_stored_prediction_without_losing_a_review(tmp_path, dynamo_store):
    from test_review_support import flagged_prediction

    for store in (open_store(f"sqlite:///{tmp_path}/a.db"), dynamo_store):
        p = flagged_prediction(3, "x.ts", 0.3, "running", None)
        save_prediction(store, p)
        store.record_human_label("cam1", 3, "v1", "waving", "alice", "2026-12-01T00:00:00+00:00", "reviewed")
        pre = Presegmentation(proposals=[ProposedSegment(start=0, end=4, label="waving", confidence=0.7)])
        assert store.attach_presegmentation("cam1", 3, "v1", pre)
        got = store.get_prediction("cam1", 3)
        assert got.presegmentation == pre and got.human_label == "waving"
        assert not store.attach_presegmentation("cam1", 3, "v2", pre)  # another model's prediction
        assert not store.attach_presegmentation("cam1", 4, "v1", pre)


def test_a_full_proposer_skips_and_counts_instead_of_holding_segments(demo, three_activities, tmp_path):
    from prometheus_client import REGISTRY

    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("clipwatch_proposals_total", {"outcome": outcome}) or 0.0

    path, _ = three_activities
    store = open_store(f"sqlite:///{tmp_path}/busy.db")
    endpoint = Endpoint(demo, SegmentReader(allowed_dirs=[path.parent]), store,
                        ReviewPolicy(min_confidence=1.01, sample_fraction=0.0))
    endpoint.proposer.max_pending = 1
    before = {o: count(o) for o in ("stored", "busy")}
    try:
        # the first prediction's proposals are in hand: the next two are skipped at once
        for seq in (1, 2, 3):
            endpoint.invoke(InvocationRequest(uri=str(path), stream_id="cam", sequence=seq))
    finally:
        endpoint.close()
    assert count("stored") - before["stored"] >= 1 and count("busy") - before["busy"] >= 1
    kept = [store.get_prediction("cam", s).presegmentation is not None for s in (1, 2, 3)]
    assert kept[0] and kept.count(True) == count("stored") - before["stored"]


EXITS_WITHOUT_CLOSE = """
import atexit, sys
from prometheus_client import REGISTRY
atexit.register(lambda: print("dropped", REGISTRY.get_sample_value(
    "clipwatch_proposals_total", {"outcome": "dropped"}) or 0.0, flush=True))
from clipwatch.blobs import SegmentReader
from clipwatch.records import InvocationRequest
from clipwatch.review_policy import ReviewPolicy
from clipwatch.store import open_store
from inference.model import load_classifier
from inference.predictor import Endpoint

path, db = sys.argv[1], sys.argv[2]
endpoint = Endpoint(load_classifier(sys.argv[3]), SegmentReader(allowed_dirs=[path.rsplit("/", 1)[0]]),
                    open_store(f"sqlite:///{db}"), ReviewPolicy(min_confidence=1.01, sample_fraction=0.0))
for seq in (1, 2, 3, 4):
    endpoint.invoke(InvocationRequest(uri=path, stream_id="cam", sequence=seq))
print("answered", flush=True)
"""  # ... and returns while the proposals thread is inside a forward, without endpoint.close()


def test_a_process_that_exits_with_proposals_in_hand_exits_cleanly(three_activities, tmp_path):
    """A daemon thread left inside MXNet/torch when the interpreter shuts them down aborts the
    process (SIGABRT: `clipwatch watch` died so once its stream ended). Endpoints still open
    at exit are closed: the running proposal finishes, those not started are dropped, counted."""
    import subprocess
    import sys

    path, _ = three_activities
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", EXITS_WITHOUT_CLOSE, str(path), str(tmp_path / "p.db"), str(DEMO)],
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "terminate called" not in proc.stderr, proc.stderr[-2000:]
    dropped = float(proc.stdout.split("dropped")[1])
    stored = [open_store(f"sqlite:///{tmp_path}/p.db").get_prediction("cam", s).presegmentation is not None
              for s in (1, 2, 3, 4)]
    assert stored[0] and stored.count(False) == dropped  # each either finished or counted as dropped
