import subprocess
import sys

import pytest


@pytest.mark.parametrize("command", ["serve", "demo"])
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
    """`make demo`'s job, shortened to one segment: local S3 → SQS → Lambda handler → endpoint
    (the full-size I3D-R50) → SQLite."""
    import json

    proc = subprocess.run([sys.executable, "-m", "clipwatch.cli", "demo", "--segments", "1",
                           "--out", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert result["summary"]["segments"] == 1 and result["summary"]["device"] == "cpu"
    (row,) = result["segments"]
    assert row["segment"] == "demo_00001.ts" and row["model"] > 0 and row["decode"] > 0
    assert (tmp_path / "out" / "clipwatch.db").is_file()
