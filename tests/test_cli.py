import subprocess
import sys

import pytest


@pytest.mark.parametrize("command", ["serve", "demo", "synth", "train", "evaluate"])
def test_every_command_has_help_with_an_example(command):
    out = subprocess.run([sys.executable, "-m", "clipwatch.cli", command, "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "example:" in out and f"clipwatch {command}" in out


def test_serve_without_a_model_says_what_is_missing(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "clipwatch.cli", "serve", "--model", str(tmp_path / "m")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"no model directory at {tmp_path / 'm'}" in proc.stderr


def test_demo_runs_the_cloud_path_end_to_end(tmp_path):
    """`make demo`'s job, shortened to two segments: a synthetic live stream → local S3 → SQS →
    Lambda handler → endpoint (the committed demo model) → SQLite, scored against ground truth."""
    import json

    proc = subprocess.run([sys.executable, "-m", "clipwatch.cli", "demo", "--segments", "2",
                           "--out", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "summary.json").read_text())
    summary = result["summary"]
    assert summary["segments"] == 2 and summary["device"] == "cpu"
    assert summary["model"].startswith("i3d-tiny-synth") and 0 <= summary["accuracy"] <= 1
    assert [r["segment"] for r in result["segments"]] == ["seg_00000.ts", "seg_00001.ts"]
    assert all(r["truth"] and r["model"] > 0 for r in result["segments"])
    assert (tmp_path / "out" / "clipwatch.db").is_file()
