"""What the endpoint benchmarks share: segments in S3 (moto), the I3D-R50 model directory, the
endpoint as its own `clipwatch serve` process, boto3 callers, and RSS sampling.

The endpoint runs in a separate process, as in production: its memory is measured alone, and
the load generator, moto and the baseline do not share its interpreter (they still share the
machine's cores, which is why the ratios within one run are the figures to read).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import httpx
import numpy as np
import psutil
from botocore.config import Config
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)

from clipwatch.localstack import free_port
from clipwatch.testmedia import render_segment

BUCKET = "clipwatch-bench"
STREAM = "bench"
NUM_CLASSES = 101  # UCF101-sized head, as the seed's fine-tuned model
SEGMENT = dict(seconds=10, size=(1280, 720), fps=30, gop=60)
PATTERNS = ("testsrc2", "mandelbrot")  # a synthetic and a detailed, fast-changing picture
REPO = Path(__file__).resolve().parent.parent

console = Console()


def progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def percentiles(values) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"median": round(float(np.median(v)), 1), "p90": round(float(np.percentile(v, 90)), 1)}


def upload_segments(workdir: Path, count: int) -> list[str]:
    """Render ``count`` distinct live-encoder-shaped segments and put them in S3; their keys."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    keys = []
    with progress() as bar:
        task = bar.add_task("rendering + uploading segments", total=count)
        for i in range(count):
            path = render_segment(workdir / f"seg_{i:05d}.ts", seed=i,
                                  pattern=PATTERNS[i % len(PATTERNS)], **SEGMENT)
            key = f"live/seg_{i:05d}.ts"
            s3.upload_file(str(path), BUCKET, key)
            keys.append(key)
            bar.advance(task)
    return keys


# Real footage for the Kinetics-400 I3D: the clips re-encoded as 720p live-encoder segments
FOOTAGE = ("segway", "basketball", "bikes", "soccer-juggling")


def upload_footage(workdir: Path) -> dict[str, int]:
    """Real footage (clipwatch.footage) as 10 s-ish 1280×720 H.264 TS segments in S3:
    key → number of frames."""
    from clipwatch import footage

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    frames = {}
    with progress() as bar:
        task = bar.add_task("re-encoding real footage to 720p segments + uploading", total=len(FOOTAGE))
        for name in FOOTAGE:
            path = footage.segment(name, workdir / f"{name}.ts", size=SEGMENT["size"])
            info = footage.probe(path)
            key = f"live/{path.name}"
            s3.upload_file(str(path), BUCKET, key)
            frames[key] = int(round(info["duration"] * info["fps"]))
            bar.advance(task)
    return frames


def upload_learning_segments(workdir: Path, count: int, seconds: float = 3.0) -> list[str]:
    """``count`` distinct 640×360 segments for the endpoint to learn its fast path from:
    windows of every real clip (clipwatch.footage) at evenly spaced starts. The endpoint counts
    a segment served again once (inference.auto_int8), so the timed segments cannot teach it."""
    from clipwatch import footage

    lengths = {name: footage.probe(footage.clip(name))["duration"] for name in footage.CLIPS}
    spare = {name: max(0.0, d - seconds) for name, d in lengths.items()}
    step = sum(spare.values()) / max(1, count - len(spare))
    windows = [(name, i * step) for name in footage.CLIPS
               for i in range(int(spare[name] / step) + 1)][:count]
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    keys = []
    with progress() as bar:
        task = bar.add_task("cutting real footage into segments to learn from + uploading", total=len(windows))
        for name, start in windows:
            path = footage.segment(name, workdir / f"learn-{name}-{start:06.2f}.ts", size=(640, 360),
                                   start=start, seconds=min(seconds, lengths[name]))
            key = f"learn/{path.name}"
            s3.upload_file(str(path), BUCKET, key)
            keys.append(key)
            bar.advance(task)
    return keys


def build_r50_model_dir(out: Path) -> Path:
    """The production network shape with random weights: timing does not depend on weights."""
    from inference.model import InputSpec, ModelCard, build_i3d, save_model_dir

    with console.status("building and exporting I3D-ResNet50 (101 classes)"):
        net = build_i3d(NUM_CLASSES, InputSpec())
        return save_model_dir(net, out, [f"class{i:03d}" for i in range(NUM_CLASSES)],
                              ModelCard(version="bench-i3d-r50", input=InputSpec()))


def calibrate_int8(model_dir: Path, segments: list[Path]) -> dict:
    """The R50's int8 module, calibrated on 2 clips of each benchmark segment and compared
    with fp32 on 3 others. (Its weights are random, so that agreement says little; the demo
    model's int8 module is the one checked against GluonCV's path, in benchmarks/agreement.py.)"""
    from clipwatch.records import utc_now
    from inference import quantize
    from inference.decode import decode_clips
    from inference.model import ModelCard
    from inference.preprocess import normalize_clips
    from inference.runtime import TorchRuntime

    spec = ModelCard.model_validate_json((model_dir / "model.json").read_text()).input

    def batches(clips: int):
        sampler = spec.sampler(clips=clips, snap_to_keyframe=False)
        for path in segments:
            frames = decode_clips(path.read_bytes(), sampler, spec.resize).frames
            yield normalize_clips(frames, spec.crop, spec.mean, spec.std)

    with console.status("calibrating the I3D-R50's int8 module on the benchmark segments"):
        module = quantize.quantize(model_dir, batches(2))
        int8, fp32 = TorchRuntime(model_dir, "int8", module=module), TorchRuntime(model_dir, "fp32")
        check = list(batches(3))
        agreement = quantize.top1_agreement(np.concatenate([int8.forward(b)[0] for b in check]),
                                            np.concatenate([fp32.forward(b)[0] for b in check]))
        record = quantize.Int8Record(
            calibration_clips=2 * len(segments), calibration_data="benchmark segments",
            checked_clips=3 * len(segments), agreement=round(agreement, 4), created_at=utc_now())
        quantize.save(module, model_dir, record)
    return record.model_dump()


class ServerProcess:
    """`clipwatch serve` in its own process on a loopback port, talking to moto through the
    AWS_ENDPOINT_URL_* variables of this process's environment. Without proposals: the
    benchmarks' untrained heads send every segment to review, and the seed's approach they are
    measured against proposes nothing (benchmarks/presegment_effort.py measures what proposals
    cost)."""

    def __init__(self, model_dir: Path, workdir: Path, extra: list[str] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "clipwatch.cli", "serve", "--model", str(model_dir),
                     "--host", "127.0.0.1", "--port", str(self.port), "--no-proposals", "--store",
                     f"sqlite:///{workdir}/bench-{self.port}.db", "--log-level", "warning",
                     *extra]
        self.log = workdir / f"serve-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "ServerProcess":
        with console.status(f"starting the endpoint: clipwatch serve {' '.join(self.args[5:])}"):
            self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=self.log.open("wb"),
                                         stderr=subprocess.STDOUT, env=dict(os.environ))
            deadline = time.monotonic() + 600  # loading + warm-up of I3D-R50 on a busy machine
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the endpoint exited: {self.log.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{self.url}/ping", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the endpoint did not start: {self.log.read_text()[-2000:]}")
                time.sleep(0.25)
        return self

    def ping(self) -> dict:
        return httpx.get(f"{self.url}/ping", timeout=10).json()

    def rss_mb(self) -> dict[str, float]:
        """Resident memory of the endpoint: its main process, and with its decode workers."""
        main = psutil.Process(self.proc.pid)
        children = main.children(recursive=True)
        own = main.memory_info().rss
        total = own + sum(_rss(c) for c in children)
        return {"main_mb": round(own / 2**20, 1), "total_mb": round(total / 2**20, 1),
                "processes": 1 + len(children)}

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except psutil.Error:  # a worker that just exited
        return 0


class RssSampler:
    """Samples the endpoint's RSS in a thread while load runs; ``peak`` afterwards."""

    def __init__(self, server: ServerProcess, every_s: float = 0.25):
        self.server, self.every = server, every_s
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.server.rss_mb())
            except psutil.Error:
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self) -> dict[str, float]:
        return {"main_mb": max(s["main_mb"] for s in self.samples),
                "total_mb": max(s["total_mb"] for s in self.samples),
                "processes": max(s["processes"] for s in self.samples)}


def runtime_client(url: str):
    # No retries: a retried request would hide a failure and double-count its time. The read
    # timeout is generous because two-core CPUs with concurrent requests take seconds each.
    return boto3.client("sagemaker-runtime", endpoint_url=url, config=Config(
        read_timeout=600, retries={"mode": "standard", "total_max_attempts": 1}))


def invoke(client, key: str, sequence: int) -> dict:
    """One request; the endpoint's timings plus the client's wall latency under "client"."""
    # A distinct (stream, sequence) per request, so every store write is a real insert.
    body = json.dumps({"s3_uri": f"s3://{BUCKET}/{key}", "stream_id": STREAM, "sequence": sequence})
    start = time.perf_counter()
    resp = client.invoke_endpoint(EndpointName="clipwatch", ContentType="application/json",
                                  Accept="application/json", Body=body)
    prediction = json.loads(resp["Body"].read())
    wall_ms = (time.perf_counter() - start) * 1000.0
    if prediction.get("stored") is not True:
        console.print(f"[yellow]warning: sequence {sequence} was not stored as a new prediction")
    return {**prediction["timings_ms"], "client": round(wall_ms, 2)}


def plot_rss(ax, xs: list[float], points: list[dict], xlabel: str) -> None:
    """The endpoint's RSS over ``xs``: main process + decode workers, and the main process."""
    ax.plot(xs, [p["total_mb"] for p in points], label="main + decode workers")
    ax.plot(xs, [p["main_mb"] for p in points], label="main process")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.legend()


def save_results(result: dict, out: Path, plot) -> None:
    """``out`` (JSON) and the picture ``plot(result, path)`` draws beside it (.png)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
    console.print(f"results written to {out} and {out.with_suffix('.png')}")
