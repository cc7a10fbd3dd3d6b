"""The loop, end to end: a served deployment meets a stream of hard cases (tiny moving objects
the demo model calls static scenes), simulated reviewers label the queue with the truth,
`clipwatch retrain` fine-tunes, gates and promotes, and the running server switches to the
new model without a restart, getting more of the hard cases right. Then the ways it must say
no: reviewers who only confirmed the model (nothing better to show), and too few reviews."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from deadline import wait_until

ROOT = Path(__file__).resolve().parents[1]
HARD = (("tiny object", 1.0),)  # every run a tiny object: the demo model's blind spot
SEGMENT_S = 4


@pytest.fixture(scope="module")
def hard_streams(tmp_path_factory):
    """A small dataset (its test split is the frozen held-out set) and three streams of hard
    cases: cam1 and cam2 get reviewed, cam3 never is."""
    from training.synth import make_dataset, write_live_stream

    root = tmp_path_factory.mktemp("loop")
    make_dataset(root / "clips", 20, seed=11, progress=False)
    for i in (1, 2, 3):
        write_live_stream(root / "streams" / f"cam{i}", 12, seed=i, size=(320, 180),
                          segment_seconds=SEGMENT_S, list_size=0, progress=False, run_kinds=HARD)
    return root


def _truth(root: Path) -> dict[tuple[str, int], list[str]]:
    from training.routing import find_streams, read_truth

    return {(s.name, r["sequence"]): r["labels"] for s in find_streams(root / "streams")
            for r in read_truth(s)}


def _requests(root: Path, streams=("cam1", "cam2", "cam3")):
    from training.routing import read_truth

    for name in streams:
        for r in read_truth(root / "streams" / name):
            yield {"uri": str(root / "streams" / name / r["file"]), "stream_id": name, "sequence": r["sequence"]}


def _clipwatch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clipwatch.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=900)


def _review(store, truth_of) -> int:
    from review.service import ReviewService
    from review.simulate import review_queue

    classes = (ROOT / "models" / "demo" / "classes.txt").read_text().split()
    return review_queue(ReviewService(store, classes, timing_of=lambda uri: (float(SEGMENT_S), 30.0)), truth_of)


def test_reviewed_hard_cases_retrain_pass_the_gate_and_reach_the_running_server(hard_streams, tmp_path):
    from clipwatch.config import Settings
    from clipwatch.store import open_store
    from inference.server import BackgroundServer, build_app

    root, deploy, store_url = hard_streams, tmp_path / "deploy", f"sqlite:///{tmp_path / 'preds.db'}"
    assert _clipwatch("deploy", str(ROOT / "models" / "demo"), "--to", str(deploy)).returncode == 0
    truth = _truth(root)
    settings = Settings.from_env({"CLIPWATCH_STORE": store_url, "CLIPWATCH_ALLOWED_DIRS": str(root)})
    with BackgroundServer(build_app(str(deploy), settings, decode_workers=0, propose=False)) as server:
        def serve_all() -> dict:
            out = {}
            for body in _requests(root):
                p = httpx.post(f"{server.url}/invocations", json=body, timeout=120).json()
                out[(p["stream_id"], p["sequence"])] = p
            return out

        before = serve_all()
        old_version = before[("cam1", 0)]["model_version"]
        hard = [k for k, p in before.items() if p["label"] not in truth[k]]
        assert len(hard) >= 12, f"the stream should hold hard cases: {len(hard)} wrong of {len(before)}"

        store = open_store(store_url)
        reviewed = _review(store, lambda stream, seq: truth[(stream, seq)][0] if stream != "cam3" else None)
        assert reviewed >= 12

        result = _clipwatch("retrain", "--deployment", str(deploy), "--data", str(root / "clips"),
                            "--store", store_url, "--allow-dir", str(root), "--min-reviewed", "6")
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout)
        new_version = report["candidate_version"]
        assert report["promoted"] and new_version == f"{old_version}-r1"
        gate_dir = deploy / "versions" / new_version / "evaluation"
        gate = json.loads((gate_dir / "gate.json").read_text())
        assert gate["passed"] and (gate_dir / "gate.png").stat().st_size > 0
        assert gate["held_out"]["new_top1"] >= gate["held_out"]["old_top1"]
        assert gate["reviewed"]["new_correct"] > gate["reviewed"]["old_correct"]
        assert json.loads((deploy / "history.jsonl").read_text().splitlines()[-1])["gate"]["passed"]

        # The running server picks the promoted model up by itself.
        wait_until(lambda: httpx.get(f"{server.url}/ping").json()["model_version"] == new_version,
                   "the server to switch to the promoted model", timeout_s=60)
        after = serve_all()
    assert {p["model_version"] for p in after.values()} == {new_version}
    fixed = [k for k in hard if after[k]["label"] in truth[k]]
    unseen = [k for k in hard if k[0] == "cam3"]
    right = lambda preds, keys: sum(preds[k]["label"] in truth[k] for k in keys)  # noqa: E731
    print(f"hard cases: {len(hard)}; the promoted model gets {len(fixed)} of them right "
          f"({right(after, unseen)} of {len(unseen)} on cam3, never reviewed); gate: held out "
          f"{gate['held_out']['old_correct']} → {gate['held_out']['new_correct']} of {gate['held_out']['clips']}, "
          f"reviewed {gate['reviewed']['old_correct']} → {gate['reviewed']['new_correct']} of {gate['reviewed']['clips']}")
    assert right(after, before) > right(before, before)
    assert right(after, unseen) > right(before, unseen)  # hard cases no reviewer has seen


def _filled_store(root: Path, deploy: Path, store_url: str):
    """The hard streams served in process into ``store_url`` by the deployment's model."""
    from clipwatch.blobs import SegmentReader
    from clipwatch.records import InvocationRequest
    from clipwatch.store import open_store
    from inference.model import load_classifier
    from inference.predictor import Endpoint

    store = open_store(store_url)
    endpoint = Endpoint(load_classifier(deploy), SegmentReader(allowed_dirs=(root,)), store, propose=False)
    predictions = {}
    try:
        for body in _requests(root, ("cam1", "cam2")):
            p = endpoint.invoke(InvocationRequest(**body))
            predictions[(p.stream_id, p.sequence)] = p.label
    finally:
        endpoint.close()
    return store, predictions


def test_a_candidate_that_is_not_better_on_reviewed_clips_is_not_promoted(hard_streams, tmp_path):
    from inference.deployment import current, history

    deploy, store_url = tmp_path / "deploy", f"sqlite:///{tmp_path / 'preds.db'}"
    assert _clipwatch("deploy", str(ROOT / "models" / "demo"), "--to", str(deploy)).returncode == 0
    store, predicted = _filled_store(hard_streams, deploy, store_url)
    # Reviewers who confirm every answer: the serving model is right on all their clips by
    # their account, so no candidate can be better there.
    assert _review(store, lambda stream, seq: predicted[(stream, seq)]) >= 6
    serving = current(deploy)
    result = _clipwatch("retrain", "--deployment", str(deploy), "--data", str(hard_streams / "clips"),
                        "--store", store_url, "--allow-dir", str(hard_streams), "--min-reviewed", "6")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "not better on the held-out reviewed clips" in result.stderr
    assert current(deploy) == serving and len(history(deploy)) == 1
    candidate = next((deploy / "candidates").iterdir())
    assert (candidate / "model" / "evaluation" / "gate.json").is_file()  # the figures say why
    assert not json.loads((candidate / "retrain.json").read_text())["promoted"]


def test_too_few_reviewed_clips_train_nothing_and_say_so(hard_streams, tmp_path):
    from inference.deployment import current

    deploy, store_url = tmp_path / "deploy", f"sqlite:///{tmp_path / 'preds.db'}"
    assert _clipwatch("deploy", str(ROOT / "models" / "demo"), "--to", str(deploy)).returncode == 0
    _filled_store(hard_streams, deploy, store_url)  # predictions and tasks, nobody has reviewed
    serving = current(deploy)
    result = _clipwatch("retrain", "--deployment", str(deploy), "--data", str(hard_streams / "clips"),
                        "--store", store_url, "--allow-dir", str(hard_streams))
    assert result.returncode == 2
    assert "0 reviewed clips" in result.stderr and "needs at least 20" in result.stderr
    assert "nothing changed" in result.stderr
    assert current(deploy) == serving and len(list((deploy / "versions").iterdir())) == 1
    assert not list((deploy / "candidates").iterdir())  # no candidate, not even its export
    not_a_deployment = _clipwatch("retrain", "--deployment", str(ROOT / "models" / "demo"), "--data",
                                  str(hard_streams / "clips"), "--store", store_url)
    assert not_a_deployment.returncode == 2 and "clipwatch deploy MODEL_DIR --to DEPLOY" in not_a_deployment.stderr
