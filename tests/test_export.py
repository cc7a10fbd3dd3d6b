"""Exports round trip: reviewed labels → Ground Truth output manifest, Label Studio tasks (checked
against the labeling config we ship), the training list file (read back by training.datasets),
PII redaction, the `clipwatch export` command, and the cloud requests (validated by botocore)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote

import pytest

from clipwatch.blobs import SegmentReader
from review import cloud
from clipwatch.records import Presegmentation, ProposedSegment
from review.exports import _proposal_regions, export, label_config
from review.pii import redact
from review.service import AuditIn, LabelsIn

from test_review_support import LABELS, flagged_prediction, review_env, review_media  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def labels_in(segments, clip_label=None, notes=""):
    return LabelsIn.model_validate({
        "tracks": sorted({s[0] for s in segments}) or ["activity"],
        "segments": [{"id": f"s{i}", "track": t, "start": a, "end": b, "label": l, "text": txt}
                     for i, (t, a, b, l, txt) in enumerate(segments)],
        "clip": {"label": clip_label, "model_correct": True, "rating": 5, "notes": notes}})


@pytest.fixture
def reviewed(review_env):
    """Three finished tasks: one reviewed, one approved, one adjusted by an auditor."""
    svc, clock = review_env["app"].state.service, review_env["clock"]
    done = []
    for i, who in enumerate(["alice", "bob", "alice"]):
        t = svc.next_task(who)
        clock.now += 12.5  # 12.5 s spent labelling
        svc.submit(t.task_id, who, labels_in([("activity", 0.5, 2.0, "running", "call 555-123-4567"),
                                              ("person 2", 1.0, 3.5, "waving", "")], notes="mail x@y.org"))
        done.append(t)
    svc.audit(done[1].task_id, "carol", AuditIn(decision="approved"))
    svc.audit(done[2].task_id, "carol", AuditIn(decision="adjusted", labels=labels_in(
        [("activity", 0.0, 4.0, "jumping", "")], clip_label="jumping")))
    return review_env, done


def test_groundtruth_output_manifest(reviewed, tmp_path):
    env, done = reviewed
    summary = export(env["store"], "groundtruth", tmp_path, LABELS, SegmentReader(allowed_dirs=[env["media"]["dir"]]))
    assert summary["clips"] == 3
    lines = [json.loads(x) for x in (tmp_path / "output.manifest").read_text().splitlines()]
    by_seq = {x["sequence"]: x for x in lines}
    first = by_seq[done[0].sequence]
    assert first["source"] == done[0].segment_uri
    (answer,) = first["clipwatch-review"]["answers"]
    assert answer["workerId"] == "alice" and answer["timeSpentInSeconds"] == pytest.approx(12.5)
    assert answer["acceptanceTime"] < answer["submissionTime"]
    ann = answer["answerContent"]["annotations"]
    assert ann["categories"] == {"activity": LABELS, "person 2": LABELS}
    assert ann["elapsedTime"] == ann["endTimestamp"] - ann["startTimestamp"] == 12500
    assert re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", ann["startUTCTime"])
    assert parsedate_to_datetime(ann["endUTCTime"]).timestamp() == ann["endTimestamp"] // 1000
    assert ann["streams"]["activity"] == [{"id": "running", "start": 0.5, "end": 2.0, "text": "call [PHONE]",
                                           "segmentId": "s0", "quality": []}]
    # a consumer written against Ground Truth's own sample reads the same segments we stored
    stored = env["store"].annotations(done[0].task_id)[0]
    assert gt_sample_consumer(answer) == sorted((s.track, s.label, s.start, s.end) for s in stored.segments)
    content = answer["answerContent"]
    assert content["activity"] == "waving"  # the label covering the most time
    assert content["modelCorrect"] == "yes" and content["notes"] == "mail [EMAIL]"
    assert content["rate"] == {"1": False, "2": False, "3": False, "4": False, "5": True}
    meta = first["clipwatch-review-metadata"]
    assert meta["type"] == "groundtruth/custom" and meta["human-annotated"] == "yes"
    assert meta["adjustment-status"] == "unadjusted" and meta["status"] == "reviewed"
    adjusted = by_seq[done[2].sequence]
    assert [a["workerId"] for a in adjusted["clipwatch-review"]["answers"]] == ["alice", "carol"]
    assert adjusted["clipwatch-review"]["label"] == "jumping"
    assert adjusted["clipwatch-review-metadata"]["adjustment-status"] == "adjusted"
    assert by_seq[done[1].sequence]["clipwatch-review-metadata"]["audits"][0]["decision"] == "approved"
    export(env["store"], "groundtruth", tmp_path / "raw", LABELS, SegmentReader(), redact=False)
    assert "555-123-4567" in (tmp_path / "raw" / "output.manifest").read_text()


def gt_sample_consumer(answer: dict) -> list[tuple]:
    """Reads a worker response the way code written for the seed's Ground Truth output does
    (``streams.language[0].id == "English"``, one of ``categories.language``): the class is the
    segment's ``id``, the track its category."""
    ann = answer["answerContent"]["annotations"]
    out = []
    for category, segments in ann["streams"].items():
        for seg in segments:
            assert seg["id"] in ann["categories"][category]
            out.append((category, seg["id"], seg["start"], seg["end"]))
    return sorted(out)


def test_groundtruth_worker_responses_sit_where_ground_truth_writes_them(reviewed, tmp_path):
    env, _ = reviewed
    export(env["store"], "groundtruth", tmp_path, LABELS, SegmentReader())
    lines = [json.loads(x) for x in (tmp_path / "output.manifest").read_text().splitlines()]
    folder = tmp_path / "annotations" / "worker-response" / "iteration-1"
    assert sorted(p.name for p in folder.iterdir()) == [f"{n}.json" for n in range(len(lines))]
    for n, line in enumerate(lines):
        answers = json.loads((folder / f"{n}.json").read_text())["answers"]
        assert answers == line["clipwatch-review"]["answers"]
        assert [gt_sample_consumer(a) for a in answers]


LABELSTUDIO_PY = ROOT / ".venv-labelstudio" / "bin" / "python"


def labelstudio_sdk_check(folder) -> dict:
    """Label Studio's own SDK (``LabelInterface``) on the export: config, task data, every
    prediction and annotation region (tests/labelstudio_check.py, in its own venv)."""
    assert LABELSTUDIO_PY.exists(), "the Label Studio SDK venv is missing: run `make test`"
    done = subprocess.run([str(LABELSTUDIO_PY), str(ROOT / "tests" / "labelstudio_check.py"), str(folder)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_labelstudio_export_plays_and_passes_label_studios_sdk(reviewed, tmp_path):
    env, done = reviewed
    store = env["store"]
    summary = export(store, "labelstudio", tmp_path, LABELS, SegmentReader(allowed_dirs=[env["media"]["dir"]]))
    assert summary["clips"] == 3 and summary["skipped"] == []
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert (tmp_path / "label_config.xml").read_text() == label_config(LABELS)
    for task in tasks:
        video = task["data"]["video"]
        assert video.startswith("/data/local-files/?d=media%2F") and video.endswith(".mp4")
        mp4 = tmp_path / unquote(video.split("d=", 1)[1])
        head = mp4.read_bytes()[:4096]
        assert head[4:8] == b"ftyp" and b"moov" in head  # faststart: the index before the media
        assert 0 <= task["predictions"][0]["score"] <= 1 and task["predictions"][0]["model_version"] == "v1"
        for r in task["predictions"][0]["result"] + [r for a in task["annotations"] for r in a["result"]]:
            for span in r["value"].get("ranges", []):
                assert 1 <= span["start"] <= span["end"] <= 4 * 30 + 1  # frames of a 4 s, 30 fps clip
        assert sum(a["ground_truth"] for a in task["annotations"]) == 1
    first = next(t for t in tasks if t["data"]["sequence"] == done[0].sequence)
    proposals = [r for r in first["predictions"][0]["result"] if r["type"] == "timelinelabels"]
    assert [(r["value"]["ranges"], r["value"]["timelinelabels"], r["score"]) for r in proposals] == [
        ([{"start": 1, "end": 45}], ["running"], 0.81), ([{"start": 46, "end": 120}], ["waving"], 0.64)]
    regions = [r for r in first["annotations"][0]["result"] if r["type"] == "timelinelabels"]
    assert regions[0]["value"] == {"ranges": [{"start": 16, "end": 60}], "timelinelabels": ["running"]}
    texts = [r for r in first["annotations"][0]["result"] if r["from_name"] == "segment_text"]
    assert texts[0]["id"] == regions[0]["id"] and texts[0]["value"]["text"] == ["call [PHONE]"]
    report = labelstudio_sdk_check(tmp_path)
    assert report["tasks"] == 3 and report["regions"] > 10 and report["problems"] == []


def test_proposals_with_labels_the_config_lacks_are_left_out():
    p = flagged_prediction(1, "x.ts", 0.4, "running", None)
    p.presegmentation = Presegmentation(proposals=[ProposedSegment(start=0, end=1, label="running", confidence=0.7),
                                                   ProposedSegment(start=1, end=4, label="surfing", confidence=0.6)])
    assert [r["value"]["timelinelabels"] for r in _proposal_regions(p, 30.0, LABELS)] == [["running"]]
    assert _proposal_regions(flagged_prediction(2, "x.ts", 0.4, "running", None), 30.0, LABELS) == []


def test_labelstudio_sdk_check_catches_a_bad_region(reviewed, tmp_path):
    """The SDK check can fail: a label the config does not list is reported."""
    env, _ = reviewed
    export(env["store"], "labelstudio", tmp_path, LABELS, SegmentReader(allowed_dirs=[env["media"]["dir"]]))
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    region = next(r for r in tasks[0]["annotations"][0]["result"] if r["type"] == "timelinelabels")
    region["value"]["timelinelabels"] = ["dancing"]
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    assert len(labelstudio_sdk_check(tmp_path)["problems"]) >= 1


def test_labelstudio_media_url_prefix_and_a_segment_that_will_not_remux(reviewed, tmp_path):
    env, done = reviewed
    broken = Path(done[1].segment_uri)
    saved = broken.read_bytes()
    try:
        broken.write_bytes(b"\x47" + b"\x00" * 187 * 3)  # a TS sync byte, then nothing playable
        summary = export(env["store"], "labelstudio", tmp_path, LABELS,
                         SegmentReader(allowed_dirs=[env["media"]["dir"]]),
                         media_url=lambda name: f"s3://review-media/clips/{name}")
    finally:
        broken.write_bytes(saved)
    assert summary["clips"] == 2
    (skip,) = summary["skipped"]
    assert skip["task_id"] == done[1].task_id and "not playable" in skip["reason"]
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert all(t["data"]["video"].startswith("s3://review-media/clips/") for t in tasks)
    assert {t["data"]["task_id"] for t in tasks} == {done[0].task_id, done[2].task_id}


def test_training_list_reads_back_with_the_training_reader(reviewed, tmp_path):
    from training.datasets import load_split

    env, done = reviewed
    summary = export(env["store"], "training", tmp_path, LABELS, SegmentReader(allowed_dirs=[env["media"]["dir"]]))
    assert summary["train"] + summary["val"] == 2 + 2 + 1  # adjusted task: the auditor's single segment
    records = []
    for split in ("train", "val"):
        classes, recs = load_split(tmp_path, split)
        assert classes == LABELS
        records += recs
    windows = sorted((r.window, classes[r.label]) for r in records)
    assert ((0.0, 4.0), "jumping") in windows and ((0.5, 2.0), "running") in windows
    assert all(r.path.is_file() and r.path.parent == tmp_path / "media" for r in records)


def test_export_command(reviewed, tmp_path):
    env, _ = reviewed
    labels_file = tmp_path / "classes.txt"
    labels_file.write_text("\n".join(LABELS))
    base = [sys.executable, "-m", "clipwatch.cli", "export", "--store", f"sqlite:///{env['tmp']}/review.db",
            "--labels", str(labels_file)]
    ok = subprocess.run(base + ["--format", "training", "--out", str(tmp_path / "ds"), "--allow-dir",
                                str(env["media"]["dir"])], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.splitlines()[-1])["format"] == "training"
    refused = subprocess.run(base + ["--format", "training", "--out", str(tmp_path / "ds2")],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "outside the allowed folders" in refused.stderr
    no_labels = subprocess.run(base[:-2] + ["--labels", str(tmp_path / "nope.txt"), "--format", "groundtruth",
                                            "--out", str(tmp_path / "gt")], capture_output=True, text=True,
                               timeout=300)
    assert no_labels.returncode == 2 and "nope.txt: no label list" in no_labels.stderr


@pytest.mark.parametrize("text, expected", [
    ("mail me at jane.doe@example.com", "mail me at [EMAIL]"),
    ("call +1 (555) 123-4567 today", "call [PHONE] today"),
    ("card 4111 1111 1111 1111 ok", "card [CREDIT_DEBIT_NUMBER] ok"),
    ("order 4111 1111 1111 1112", "order 4111 1111 1111 1112"),  # fails Luhn: not a card
    ("ssn 123-45-6789", "ssn [SSN]"),
    ("from 192.168.10.1", "from [IP_ADDRESS]"),
    ("2 people, 3 s", "2 people, 3 s"),
    ("", ""),
])
def test_pii_redaction(text, expected):
    assert redact(text) == expected


def test_cloud_requests_validate_against_botocore_models():
    import boto3
    from botocore.stub import Stubber

    from clipwatch.records import LabelScore, Prediction, ReviewDecision, ReviewTask

    sm = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    a2i = boto3.client("sagemaker-a2i-runtime", region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x")
    arn = "arn:aws:sagemaker:us-east-1:123456789012"
    role = "arn:aws:iam::123456789012:role/gt"
    team = f"{arn}:workteam/private-crowd/reviewers"
    lam = "arn:aws:lambda:us-east-1:123456789012:function:"
    job = cloud.labeling_job_request("clipwatch-review-1", "s3://b/in.manifest", "s3://b/out/", role, team,
                                     "s3://b/template.liquid.html", lam + "pre", lam + "acs", workers_per_clip=2)
    ui = cloud.human_task_ui_request("clipwatch-ui", LABELS)
    flow = cloud.flow_definition_request("clipwatch-flow", role, team, f"{arn}:human-task-ui/clipwatch-ui", "s3://b/a2i/")
    p = Prediction(stream_id="cam1", sequence=7, segment_uri="s3://b/cam1/seg_00007.ts", model_version="v1",
                   label="running", confidence=0.41, margin=0.05, entropy=1.2,
                   top_k=[LabelScore(label="running", probability=0.41)], frames=[[0]], device="cpu", timings_ms={},
                   review=ReviewDecision(needs_review=True, reasons=["confidence 0.410 < 0.6"]))
    loop = cloud.human_loop_request(f"{arn}:flow-definition/clipwatch-flow", p)
    with Stubber(sm) as s:
        s.add_response("create_labeling_job", {"LabelingJobArn": f"{arn}:labeling-job/clipwatch-review-1"}, job)
        s.add_response("create_human_task_ui", {"HumanTaskUiArn": f"{arn}:human-task-ui/clipwatch-ui"}, ui)
        s.add_response("create_flow_definition", {"FlowDefinitionArn": f"{arn}:flow-definition/clipwatch-flow"}, flow)
        sm.create_labeling_job(**job)
        sm.create_human_task_ui(**ui)
        sm.create_flow_definition(**flow)
    with Stubber(a2i) as s:
        s.add_response("start_human_loop", {"HumanLoopArn": f"{arn}:human-loop/x"}, loop)
        a2i.start_human_loop(**loop)
    assert json.loads(loop["HumanLoopInput"]["InputContent"])["reasons"] == "confidence 0.410 < 0.6"
    assert "grant_read_access" in ui["UiTemplate"]["Content"] and "running" in ui["UiTemplate"]["Content"]
    t = ReviewTask.for_prediction(p)
    (line,) = cloud.groundtruth_input_manifest([t]).splitlines()
    assert json.loads(line)["source"] == p.segment_uri
    bad = {k: v for k, v in job.items() if k != "RoleArn"}  # a required parameter missing
    from botocore.exceptions import ParamValidationError

    with Stubber(sm) as s, pytest.raises(ParamValidationError):
        s.add_response("create_labeling_job", {"LabelingJobArn": "x"}, bad)
        sm.create_labeling_job(**bad)
