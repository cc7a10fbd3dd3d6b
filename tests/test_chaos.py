"""Chaos: a real-time live stream through every moving part, each killed in turn.

ffmpeg's HLS muxer writes 2 s segments in real time with a 3-segment sliding window (6 s);
`clipwatch watch` follows it onto tansu (durable: its log in S3, moto's server); two
`clipwatch worker`s call `clipwatch serve` over HTTP, which stores predictions and review tasks
in SQLite. Then, one after the other: a worker is SIGKILLed (and replaced), the follower is
SIGKILLed (and restarted on its state), the broker is stopped for 18 s (three windows), and the
endpoint is stopped for 18 s. At the end every segment the encoder wrote has exactly one stored
prediction, and every flagged one exactly one review task. Minutes, not seconds."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx

from clipwatch.localstack import free_port
from clipwatch.store import open_store
from clipwatch.testmedia import ffmpeg
from streaming.playlist import parse
from streaming.tansu import Tansu

from deadline import exited, wait_until

ROOT = Path(__file__).resolve().parents[1]
SEGMENT_S, WINDOW, STREAM_S = 2, 3, 96
OUTAGE_S = 3 * WINDOW * SEGMENT_S  # three playlist windows


class Process:
    """A clipwatch command that can be killed and started again with the same arguments."""

    def __init__(self, args: list[str], log: Path, cwd: Path, env: dict | None = None):
        self.args, self.log, self.cwd, self.env, self.proc = args, log, cwd, env, None

    def start(self) -> "Process":
        self.proc = subprocess.Popen([sys.executable, "-m", "clipwatch.cli", *self.args], cwd=self.cwd,
                                     env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            exited(self.proc, f"{self.args[0]} after signal {sig}", timeout_s=60)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def test_every_segment_survives_a_worker_the_follower_the_broker_and_the_endpoint_dying(aws, tmp_path):
    import os

    boto3.client("s3").create_bucket(Bucket="chaos-tansu")
    broker = Tansu(free_port(), storage="s3://chaos-tansu/", log_file=tmp_path / "tansu.log",
                   env={"AWS_ENDPOINT": aws.url, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}).start()
    hls, spool = tmp_path / "hls", tmp_path / "spool"
    hls.mkdir()
    spool.mkdir()
    port = free_port()
    env = {**os.environ, "CLIPWATCH_REVIEW_MIN_CONFIDENCE": "0.9"}  # plenty of review tasks
    endpoint = Process(["serve", "--model", str(ROOT / "models" / "demo"), "--host", "127.0.0.1", "--port", str(port),
                        "--store", f"sqlite:///{tmp_path / 'preds.db'}", "--allow-dir", str(spool),
                        "--decode-workers", "0"], tmp_path / "serve.log", tmp_path, env)
    follower = Process(["watch", str(hls / "live.m3u8"), "--bus", broker.url, "--topic-prefix", "chaos",
                        "--stream-id", "live", "--spool", str(spool), "--state", str(tmp_path / "state.db"),
                        "--wait", "--poll-interval", "0.5"], tmp_path / "watch.log", tmp_path)
    workers = [Process(["worker", "--bus", broker.url, "--endpoint-url", f"http://127.0.0.1:{port}",
                        "--topic-prefix", "chaos", "--backoff", "0.5", "--partitions", "2"],
                       tmp_path / f"worker{i}.log", tmp_path) for i in range(3)]
    encoder = None

    def serving() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        endpoint.start()
        wait_until(serving, "the endpoint to serve", timeout_s=300, alive=lambda: _running(endpoint))
        workers[0].start(), workers[1].start(), follower.start()
        wait_until(lambda: all(w.log.exists() and "joined group" in w.log.read_text(errors="replace")
                               for w in workers[:2]), "both workers in the group", timeout_s=300)
        encoder = subprocess.Popen(
            [ffmpeg(), "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
             "-t", str(STREAM_S), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "30",
             "-keyint_min", "30", "-sc_threshold", "0", "-f", "hls", "-hls_time", str(SEGMENT_S),
             "-hls_list_size", str(WINDOW), "-hls_flags", "delete_segments", "-hls_segment_filename",
             str(hls / "seg_%05d.ts"), str(hls / "live.m3u8")], stderr=subprocess.PIPE)
        started = time.monotonic()
        store = open_store(f"sqlite:///{tmp_path / 'preds.db'}")

        def at(seconds: float) -> None:
            wait_until(lambda: time.monotonic() - started >= seconds, f"{seconds} s into the stream",
                       timeout_s=seconds + 60, interval_s=0.2, alive=lambda: _running(encoder))

        at(10)
        assert len(store.timeline("live")) >= 1, "nothing predicted 10 s in"
        busy = max(workers[:2], key=lambda w: w.log.read_text(errors="replace").count(" predicted "))
        busy.kill()  # the worker holding the stream's partition dies mid-stream; another one joins
        workers[2].start()
        at(20)
        follower.kill()  # the follower dies; restarted on its state file
        time.sleep(2)
        follower.start()
        at(30)
        broker.stop()  # the broker goes away for three playlist windows
        time.sleep(OUTAGE_S)
        broker.start()
        at(30 + OUTAGE_S + 12)
        endpoint.kill(signal.SIGTERM)  # the endpoint goes away as long
        time.sleep(OUTAGE_S)
        endpoint.start()
        wait_until(serving, "the endpoint back", timeout_s=300)
        assert exited(encoder, "the live encoder", timeout_s=STREAM_S + 120) == 0, encoder.stderr.read().decode()
        final = parse((hls / "live.m3u8").read_bytes(), str(hls / "live.m3u8"))
        written = final.last_sequence + 1  # every segment the encoder wrote
        assert final.ended and written >= STREAM_S // SEGMENT_S - 1
        assert exited(follower.proc, "`clipwatch watch` at ENDLIST", timeout_s=300) == 0, follower.tail()

        def a_worker_runs() -> None:
            assert any(w.alive() for w in workers), [w.tail() for w in workers]

        wait_until(lambda: len(store.timeline("live")) >= written, f"all {written} segments predicted",
                   timeout_s=600, interval_s=1, alive=a_worker_runs)
    finally:
        for p in (*workers, follower, endpoint):
            p.kill(signal.SIGTERM)
        if encoder and encoder.poll() is None:
            encoder.kill()
            encoder.wait(timeout=60)
        broker.stop()
    predictions = store.timeline("live")
    assert [p.sequence for p in predictions] == list(range(written))  # none lost
    assert len({p.segment_uri for p in predictions}) == written  # none stored twice under two keys
    flagged = {p.sequence for p in predictions if p.review.needs_review}
    tasks = [t for status in ("pending", "reviewed", "audited") for t in store.review_tasks(status, limit=10_000)
             if t.stream_id == "live"]
    assert sorted(t.sequence for t in tasks) == sorted(flagged) and flagged  # one task per flagged, none lost
    watch_log = follower.log.read_text(errors="replace")
    assert "left the playlist window" not in watch_log and "giving up" not in watch_log, watch_log[-3000:]
    assert "dead-lettering" not in "".join(w.log.read_text(errors="replace") for w in workers if w.log.exists())


def _running(process) -> None:
    proc = process.proc if isinstance(process, Process) else process
    assert proc is not None and proc.poll() is None, getattr(process, "tail", lambda: "")()
