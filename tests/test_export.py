"""Exports round trip: reviewed labels → Ground Truth output manifest, Label Studio tasks (checked
against the labeling config we ship), the training list file (read back by training.datasets),
PII redaction, the `clipwatch export` command, and the cloud requests (validated by botocore)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from clipwatch.blobs import SegmentReader
from review import cloud
from review.exports import export, label_config
from review.pii import redact
from review.service import AuditIn, LabelsIn

from test_review_support import LABELS, review_env, review_media  # noqa: F401


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
    assert ann["streams"]["activity"] == [{"id": "s0", "start": 0.5, "end": 2.0, "text": "call [PHONE]",
                                           "label": "running", "quality": []}]
    assert ann["streams"]["person 2"][0]["label"] == "waving"
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


def test_labelstudio_tasks_match_the_labeling_config(reviewed, tmp_path):
    env, done = reviewed
    export(env["store"], "labelstudio", tmp_path, LABELS, SegmentReader())
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    config = ET.fromstring((tmp_path / "label_config.xml").read_text())
    assert (tmp_path / "label_config.xml").read_text() == label_config(LABELS)
    controls = {el.get("name"): el for el in config if el.get("toName")}
    objects = {el.get("name"): el for el in config if el.tag == "Video"}
    kinds = {"TimelineLabels": "timelinelabels", "Choices": "choices", "TextArea": "textarea", "Rating": "rating"}
    assert len(tasks) == 3
    for task in tasks:
        assert set(task["data"]) >= {"video", "fps"} and task["data"]["video"].endswith(".ts")
        (pred,) = task["predictions"]
        assert 0 <= pred["score"] <= 1 and pred["model_version"] == "v1"
        results = pred["result"] + [r for a in task["annotations"] for r in a["result"]]
        for r in results:
            tag = controls[r["from_name"]]
            assert r["to_name"] == tag.get("toName") and r["to_name"] in objects
            assert r["type"] == kinds[tag.tag]
            allowed = {c.get("value") for c in tag}
            for key in ("choices", "timelinelabels"):
                if key in r["value"] and tag.tag in ("Choices", "TimelineLabels") and r["from_name"] != "model_correct":
                    assert set(r["value"][key]) <= allowed
            for span in r["value"].get("ranges", []):
                assert 1 <= span["start"] <= span["end"] <= 4 * 30 + 1  # frames of a 4 s, 30 fps clip
        assert sum(a["ground_truth"] for a in task["annotations"]) == 1
    first = next(t for t in tasks if t["data"]["sequence"] == done[0].sequence)
    regions = [r for r in first["annotations"][0]["result"] if r["type"] == "timelinelabels"]
    assert regions[0]["value"] == {"ranges": [{"start": 16, "end": 60}], "timelinelabels": ["running"]}
    texts = [r for r in first["annotations"][0]["result"] if r["from_name"] == "segment_text"]
    assert texts[0]["id"] == regions[0]["id"] and texts[0]["value"]["text"] == ["call [PHONE]"]


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
