import subprocess
import sys

import pytest


@pytest.mark.parametrize("command", ["serve", "demo", "synth", "train", "evaluate", "loadtest", "stack", "review", "review-user", "export",
                                     "watch", "worker", "bridge", "broker", "model"])
def test_every_command_has_help_with_an_example(command):
    out = subprocess.run([sys.executable, "-m", "clipwatch.cli", command, "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "example:" in out and f"clipwatch {command}" in out


def test_serve_without_a_model_says_what_is_missing(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "clipwatch.cli", "serve", "--model", str(tmp_path / "m")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"no model directory at {tmp_path / 'm'}" in proc.stderr


def test_demo_follows_a_live_stream_end_to_end(tmp_path):
    """`make demo`'s job, shortened to two segments: ffmpeg writes a synthetic live HLS stream →
    the follower → the in-process bus → a worker → the committed demo model → SQLite, scored
    against the stream's ground truth, with metrics served while it runs; then the real-footage
    stream through the same path to the Kinetics-400 I3D."""
    import json
    import sqlite3

    proc = subprocess.run([sys.executable, "-m", "clipwatch.cli", "demo", "--segments", "2",
                           "--out", "out"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "summary.json").read_text())
    summary = result["summary"]
    assert summary["segments"] == 2 and summary["device"] == "cpu" and summary["dead_lettered"] == 0
    assert summary["model"].startswith("i3d-tiny-synth") and 0 <= summary["accuracy"] <= 1
    assert summary["metrics"].startswith("http://127.0.0.1:") and summary["lag_s"]["p50"] >= 0
    assert sorted(r["segment"] for r in result["segments"]) == ["seg_00000.ts", "seg_00001.ts"]
    assert all(r["stored"] and r["model_ms"] > 0 for r in result["segments"])
    with sqlite3.connect(tmp_path / "out" / "clipwatch.db") as db:
        assert db.execute("SELECT stream_id, sequence FROM predictions WHERE stream_id = 'demo' "
                          "ORDER BY sequence").fetchall() == [("demo", 0), ("demo", 1)]
        real_rows = db.execute("SELECT model_version FROM predictions WHERE stream_id = 'real'").fetchall()
    assert (tmp_path / "out" / "summary.png").stat().st_size > 0
    assert len(list((tmp_path / "out" / "segments" / "demo").glob("*.ts"))) == 2
    # The second stream: real footage, recognized by DeepMind's Kinetics-400 I3D.
    real = result["real_footage"]
    assert real["segments"] == 5 and real["dead_lettered"] == 0
    assert real_rows == [("kinetics400-i3d-deepmind-1",)] * 5
    assert real["top3_expected"] >= 0.8 and real["top1_expected"] >= 0.6
    shown = {r["clip"]: r["top3"][0][0] for r in real["segments_detail"]}
    assert shown["segway"] == "using_segway" and shown["soccer-juggling"] == "juggling_soccer_ball"
