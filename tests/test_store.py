import pytest

from clipwatch.records import LabelScore, Prediction, ReviewDecision, ReviewTask
from clipwatch.store import open_store, save_prediction


def prediction(seq: int, version: str = "v1", confidence: float = 0.9, review: bool = False,
               stream: str = "s3://b/live") -> Prediction:
    return Prediction(
        stream_id=stream, sequence=seq, segment_uri=f"{stream}/seg_{seq:05d}.ts", model_version=version,
        label="running", confidence=confidence, margin=0.5, entropy=0.3,
        top_k=[LabelScore(label="running", probability=confidence)], frames=[[0, 2]], device="cpu",
        timings_ms={"model": 1.0}, review=ReviewDecision(needs_review=review, reasons=["low"] if review else []))


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path}/p.db")
    else:
        s = request.getfixturevalue("dynamo_store")
    yield s
    s.close()


def test_repeated_event_writes_once_and_new_model_version_replaces(store):
    assert store.put_prediction(prediction(1, confidence=0.9)) is True
    assert store.put_prediction(prediction(1, confidence=0.1)) is False  # same segment + version
    assert store.get_prediction("s3://b/live", 1).confidence == pytest.approx(0.9)
    assert store.put_prediction(prediction(1, version="v2", confidence=0.7)) is True
    got = store.get_prediction("s3://b/live", 1)
    assert (got.model_version, got.confidence) == ("v2", pytest.approx(0.7))
    assert store.get_prediction("s3://b/live", 2) is None


def test_timeline_is_a_range_in_sequence_order(store):
    for seq in (5, 3, 4, 10, 1):
        store.put_prediction(prediction(seq))
    store.put_prediction(prediction(2, stream="s3://b/other"))
    assert [p.sequence for p in store.timeline("s3://b/live")] == [1, 3, 4, 5, 10]
    assert [p.sequence for p in store.timeline("s3://b/live", 3, 5)] == [3, 4, 5]


def test_flagged_prediction_creates_one_pending_review_task(store):
    task = save_prediction(store, prediction(7, confidence=0.3, review=True))
    assert task is not None and task.status == "pending"
    assert save_prediction(store, prediction(7, confidence=0.3, review=True)) is None  # repeat
    assert save_prediction(store, prediction(8)) is None  # confident: no task
    tasks = store.review_tasks()
    assert [(t.stream_id, t.sequence, t.reasons) for t in tasks] == [("s3://b/live", 7, ["low"])]
    assert isinstance(tasks[0], ReviewTask)


def test_unknown_store_url():
    with pytest.raises(ValueError, match="unknown store URL"):
        open_store("postgres://x")
