import subprocess
import sys

import pytest


@pytest.mark.parametrize("command", ["serve", "demo", "synth", "train", "evaluate", "loadtest", "stack", "review", "review-user", "export",
                                     "watch", "worker", "bridge", "broker", "model"])
def test_every_command_has_help_with_an_example(command):
    out = subprocess.run([sys.executable, "-m", "clipwatch.cli", command, "--help"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    assert "example:" in out and f"clipwatch {command}" in out


def test_serve_without_a_model_says_what_is_missing(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "clipwatch.cli", "serve", "--model", str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert f"no model directory at {tmp_path / 'm'}" in proc.stderr


def test_demo_follows_a_live_stream_end_to_end(tmp_path):
    """`make demo`'s job, shortened to two segments: ffmpeg writes a synthetic live HLS stream →
    the follower → the in-process bus → a worker → the committed demo model → SQLite, scored
    against the stream's ground truth, with metrics served while it runs; then the real-footage
    stream through the same path to the Kinetics-400 I3D."""
    import json
    import sqlite3

    from clipwatch.localstack import free_port

    review_port = free_port()
    proc = subprocess.run([sys.executable, "-m", "clipwatch.cli", "demo", "--segments", "2",
                           "--out", "out", "--review-port", str(review_port)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
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
    # The human loop: the demo names what went to review and prints a command that serves it.
    assert f"{result['review']['pending']} segment(s) went to human review" in proc.stdout
    assert result["review"]["pending"] >= 1  # the cyclists, at least: the Kinetics model is unsure
    label_flagged_clip_with_printed_command(tmp_path, proc.stdout, review_port)


def label_flagged_clip_with_printed_command(cwd, demo_stdout: str, port: int) -> None:
    """Run the `clipwatch review …` line the demo printed, as printed, from the demo's folder;
    log in with the printed token, take the first flagged clip, play it, label it."""
    import re
    import shlex
    import time

    import requests

    command = next(line.strip() for line in demo_stdout.splitlines() if " review --store " in line)
    token = re.search(r"paste the token (\S+)", demo_stdout).group(1)
    server = subprocess.Popen(shlex.split(command), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                if requests.get(f"{base}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the printed review command did not serve within 60 s"
            time.sleep(0.3)
        auth = {"Authorization": f"Bearer {token}"}
        task = requests.post(f"{base}/api/next", headers=auth, timeout=30).json()["task"]
        detail = requests.get(f"{base}/api/tasks/{task['ref']}", headers=auth, timeout=120).json()
        assert task["label"] in detail["labels"] and detail["media"]["duration"] > 0
        media = requests.get(base + detail["media"]["url"], headers=auth, timeout=120)
        assert media.status_code == 200 and media.content[4:8] == b"ftyp"  # MP4 the browser plays
        label = task["label"]
        r = requests.post(f"{base}/api/tasks/{task['ref']}/submit", headers=auth, timeout=30, json={
            "tracks": ["activity"], "clip": {"label": label, "model_correct": False, "rating": 4},
            "segments": [{"id": "s1", "track": "activity", "start": 0.0, "end": 2.0, "label": label}]})
        assert r.status_code == 200, r.text
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_demo_review_serves_the_review_tool_until_interrupted(tmp_path):
    """`clipwatch demo --review`: after the stream, the review tool serves the demo's own store
    (a newcomer opens the printed URL); Ctrl-C ends it cleanly."""
    import json
    import signal
    import time

    import requests

    from clipwatch.localstack import free_port

    port = free_port()
    # Ctrl-C as at a terminal, whatever started this test run: a shell running it in the
    # background (`make test &`) hands every child SIGINT ignored, and Python then never turns
    # SIGINT into KeyboardInterrupt.
    demo = subprocess.Popen([sys.executable, "-m", "clipwatch.cli", "demo", "--segments", "1", "--no-real",
                             "--out", "out", "--review", "--review-port", str(port)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 600
        while not (tmp_path / "out" / "summary.json").is_file() or "review" not in json.loads(
                (tmp_path / "out" / "summary.json").read_text()):
            assert demo.poll() is None, demo.stdout.read()[-2000:]
            assert time.monotonic() < deadline, "the demo did not finish its stream within 10 min"
            time.sleep(0.5)
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert demo.poll() is None and time.monotonic() < deadline, "the review tool did not start"
            time.sleep(0.3)
        assert requests.get(f"http://127.0.0.1:{port}/login", timeout=5).status_code == 200
        demo.send_signal(signal.SIGINT)
        out, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, out[-2000:]
    assert f"http://127.0.0.1:{port}/login" in out and "token" in out
