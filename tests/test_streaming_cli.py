"""`clipwatch watch` / `clipwatch worker` as users run them: the embedded default end to end,
and clear messages (exit status 2, no traceback) for what they get wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def clipwatch(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clipwatch.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # `watch` loads a model and follows to ENDLIST


def test_watch_on_the_embedded_default_classifies_every_segment(small_segments, tmp_path):
    """Every segment sent to review here: watch ends when the stream does, after the proposed
    segments of each are stored (and without dying in a model thread on the way out)."""
    import os

    from clipwatch.store import open_store

    hls = tmp_path / "hls"
    hls.mkdir()
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:40"]
    for n in range(3):
        (hls / f"cam_{40 + n}.ts").write_bytes(small_segments[f"seg{n}"].read_bytes())
        lines += ["#EXTINF:2.0,", f"cam_{40 + n}.ts"]
    (hls / "live.m3u8").write_text("\n".join(lines + ["#EXT-X-ENDLIST", ""]))
    proc = clipwatch("watch", str(hls / "live.m3u8"), "--model", str(ROOT / "models" / "demo"),
                     "--store", "sqlite:///preds.db", cwd=tmp_path,
                     env={**os.environ, "CLIPWATCH_REVIEW_MIN_CONFIDENCE": "1.01"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    stored = open_store(f"sqlite:///{tmp_path / 'preds.db'}").timeline(str(hls))
    assert [p.sequence for p in stored] == [40, 41, 42]
    assert all(p.review.needs_review and p.presegmentation is not None for p in stored)
    assert all(Path(p.segment_uri).is_relative_to(tmp_path / ".clipwatch" / "segments") for p in stored)
    assert "the playlist ended (ENDLIST) at sequence 42" in proc.stderr


def test_watch_and_worker_name_what_is_wrong(tmp_path):
    (tmp_path / "page.m3u8").write_text("<!doctype html>\n<title>Not found</title>\n")
    proc = clipwatch("watch", str(tmp_path / "page.m3u8"), "--model", "models/none", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"cannot follow {tmp_path / 'page.m3u8'}: not an HLS playlist: line 1 is '<!doctype html>'" in proc.stderr
    proc = clipwatch("watch", str(tmp_path / "missing.m3u8"), "--model", "models/none", cwd=tmp_path)
    assert proc.returncode == 2 and "no such file" in proc.stderr and "--wait" in proc.stderr
    proc = clipwatch("watch", str(tmp_path / "page.m3u8"), cwd=tmp_path)
    assert proc.returncode == 2 and "needs an endpoint for its worker" in proc.stderr
    proc = clipwatch("worker", "--bus", "memory", "--endpoint-url", "http://127.0.0.1:9", cwd=tmp_path)
    assert proc.returncode == 2 and "--bus kafka://host:port" in proc.stderr
    proc = clipwatch("worker", "--bus", "kafka://127.0.0.1:9", cwd=tmp_path)
    assert proc.returncode == 2 and "exactly one of --model, --endpoint-url or --sagemaker-endpoint" in proc.stderr
