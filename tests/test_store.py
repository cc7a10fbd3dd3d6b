import pytest

from clipwatch.records import LabelScore, Prediction, ReviewDecision, ReviewTask
from clipwatch.store import open_store, save_prediction


MADE = {"v1": "2026-11-01T00:00:00Z", "v2": "2026-11-20T00:00:00Z"}  # when each model was trained


def prediction(seq: int, version: str = "v1", confidence: float = 0.9, review: bool = False,
               stream: str = "s3://b/live") -> Prediction:
    return Prediction(
        stream_id=stream, sequence=seq, segment_uri=f"{stream}/seg_{seq:05d}.ts", model_version=version,
        model_created_at=MADE.get(version),
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


def test_a_redelivered_event_of_an_older_model_never_brings_its_label_back(store):
    """v1 → v2 → v1 again (a worker still on v1 takes a redelivered event after the redeploy):
    the newer model's prediction stays, in both stores."""
    assert store.put_prediction(prediction(7, version="v1", confidence=0.4)) is True
    assert store.put_prediction(prediction(7, version="v2", confidence=0.8)) is True
    assert store.put_prediction(prediction(7, version="v1", confidence=0.4)) is False
    got = store.get_prediction("s3://b/live", 7)
    assert (got.model_version, got.confidence) == ("v2", pytest.approx(0.8))
    # In the other order too: v2 first, then a late v1 event.
    assert store.put_prediction(prediction(8, version="v2")) is True
    assert store.put_prediction(prediction(8, version="v1")) is False
    assert store.get_prediction("s3://b/live", 8).model_version == "v2"


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


# --- review tasks, leases, annotations, audits, write-back (issue 5) -----------------------------

def _annotation(task_id: str, author: str, at: str):
    from clipwatch.records import Annotation, ClipAnswer, SegmentLabel

    return Annotation(annotation_id=f"{author}-{at}", task_id=task_id, stream_id="s3://b/live", sequence=7,
                      segment_uri="s3://b/live/seg_00007.ts", author=author,
                      tracks=["activity"], segments=[SegmentLabel(id="s1", track="activity", start=0.5,
                                                                  end=2.0, label="running", text="ok")],
                      clip=ClipAnswer(label="running", rating=4), clip_duration=10.0, clip_fps=30.0,
                      accepted_at=at, submitted_at=at)


def test_task_updates_are_conditional_on_the_revision(store):
    task = save_prediction(store, prediction(7, confidence=0.3, review=True))
    a, b = store.get_review_task(task.task_id), store.get_review_task(task.task_id)
    a.lease_owner, a.lease_expires = "alice", 1e12
    assert store.update_review_task(a) is True and a.revision == 1
    b.lease_owner = "bob"  # read before alice's write: must lose
    assert store.update_review_task(b) is False
    got = store.get_review_task(task.task_id)
    assert (got.lease_owner, got.revision) == ("alice", 1)
    got.status = "reviewed"
    assert store.update_review_task(got) is True
    assert store.review_tasks("pending") == [] and [t.task_id for t in store.review_tasks("reviewed")] == [task.task_id]
    assert store.get_review_task("missing") is None


def test_review_budget_counts_tasks_per_stream_since(store):
    for seq in (1, 2, 3):
        save_prediction(store, prediction(seq, confidence=0.3, review=True))
    save_prediction(store, prediction(4, confidence=0.3, review=True, stream="s3://b/other"))
    assert store.count_review_tasks("s3://b/live", "2000-01-01T00:00:00+00:00") == 3
    assert store.count_review_tasks("s3://b/live", "2999-01-01T00:00:00+00:00") == 0
    assert store.count_review_tasks("s3://b/other", "2000-01-01T00:00:00+00:00") == 1


def test_annotations_audits_and_label_write_back(store):
    from clipwatch.records import Agreement, AuditRecord

    task = save_prediction(store, prediction(7, confidence=0.3, review=True))
    store.put_annotation(_annotation(task.task_id, "bob", "2026-01-01T00:00:02.000+00:00"))
    store.put_annotation(_annotation(task.task_id, "alice", "2026-01-01T00:00:01.000+00:00"))
    assert [a.author for a in store.annotations(task.task_id)] == ["alice", "bob"]  # submission order
    assert store.annotations("other") == []
    audit = AuditRecord(audit_id="a1", task_id=task.task_id, auditor="carol", decision="approved",
                        reviewed_annotation_id="alice-x", agreement=Agreement(segment_iou=1, label_iou=1,
                                                                               clip_label_agree=True))
    store.put_audit(audit)
    assert store.audits(task.task_id) == [audit]
    assert store.record_human_label("s3://b/live", 7, "v1", "walking", "alice", "2026-01-01T00:00:03Z", "reviewed")
    p = store.get_prediction("s3://b/live", 7)
    assert (p.human_label, p.reviewed_by, p.status, p.label) == ("walking", "alice", "reviewed", "running")
    # a newer model version replaced the prediction meanwhile: the old review does not land on it
    assert not store.record_human_label("s3://b/live", 7, "v0", "x", "bob", "t", "reviewed")
    assert not store.record_human_label("s3://b/live", 99, "v1", "x", "bob", "t", "reviewed")


def test_recent_and_streams(store):
    for seq in (1, 2, 3):
        store.put_prediction(prediction(seq))
    store.put_prediction(prediction(1, stream="s3://b/other"))
    assert [p.sequence for p in store.recent("s3://b/live", 2)] == [3, 2]
    assert store.streams() == ["s3://b/live", "s3://b/other"]
