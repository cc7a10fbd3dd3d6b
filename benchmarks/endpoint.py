"""Benchmark of the clipwatch endpoint against a seed-style baseline, in one run.

What is measured
----------------
The workload is the production one: I3D-ResNet50 (GluonCV ``i3d_resnet50_v1_custom``, 101
classes as UCF101, random weights; 32 frames, 224x224 crop) on 10 s 1280x720 30 fps H.264
MPEG-TS segments (2 s GOP), as a live HLS encoder writes them. The segments live in S3, served
by moto's server mode over HTTP on loopback, so every byte travels through boto3 and a socket
as it would in AWS (only the network latency of a real region is missing).

1. **Low-load latency.** Sequential requests through boto3's own ``sagemaker-runtime`` client
   to the endpoint (uvicorn on loopback). For each request: the endpoint's phase timings
   (``timings_ms``: fetch, decode, preprocess, model, store, total) and the client's wall
   latency, reported as median and p90. This is what a segment waits when the endpoint is idle.
2. **Sustained throughput.** C clients at once, each with its own boto3 client, for a fixed
   number of requests: segments/min = requests / wall seconds * 60. This is the number that
   decides how many streams one instance keeps up with (a stream makes 6 segments/min).
3. **Seed-style baseline.** What the seed's handler did per request: new boto3 client, download
   to a temporary file, ``decord.VideoReader`` straight on the TS at 340x256, 32 consecutive
   frames from the middle, GluonCV's ``VideoGroupValTransform`` (float64, frame by frame), and an
   imperative (not hybridized) forward of the same network. Measured sequentially; its
   throughput is 60 / median latency, since the seed ran one request at a time. It writes
   nothing to a store, so it is slightly favoured.

Everything (moto, the endpoint, the clients, the baseline) shares one process and the machine's
cores, and the results are as noisy as the machine is shared: read medians, not single runs.
The first request of each side is run apart and reported as "cold", so the medians describe a
warm service. No figure is asserted: this reports, it does not gate.
"""

from __future__ import annotations

# `inference` sets MXNet's OpenMP thread count, which MXNet reads when first imported; MXNet must
# be loaded before decord (with decord first, MXNet's first forward segfaults).
import inference  # noqa: F401,I001
import mxnet as mx  # noqa: I001

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path

import boto3
import numpy as np
from botocore.config import Config
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                           TextColumn, TimeElapsedColumn)
from rich.table import Table

from clipwatch.config import Settings
from clipwatch.localstack import LocalAws
from clipwatch.testmedia import render_segment
from inference.model import InputSpec, ModelCard, build_i3d, load_classifier, save_model_dir
from inference.predictor import Endpoint
from inference.server import BackgroundServer, create_app

BUCKET = "clipwatch-bench"
STREAM = "bench"
NUM_CLASSES = 101  # UCF101-sized head
SEGMENT = dict(seconds=10, size=(1280, 720), fps=30, gop=60)
PATTERNS = ("testsrc2", "mandelbrot")  # a synthetic and a detailed, fast-changing picture
ENDPOINT_PHASES = ("fetch", "decode", "preprocess", "model", "store", "total")
BASELINE_PHASES = ("download", "decode", "preprocess", "model", "total")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "endpoint.json"

EXAMPLE = """\
example (a quick check, then the default run):
  .venv/bin/python benchmarks/endpoint.py --segments 2 --requests 4 --concurrency 2 \\
      --throughput-requests 4 --baseline-requests 2
  .venv/bin/python benchmarks/endpoint.py
"""

console = Console()
# moto's werkzeug logs every S3 call, and MXNet's export warns about an untyped input: both
# would bury the tables.
logging.getLogger("werkzeug").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", category=UserWarning, module="mxnet")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Latency and throughput of the clipwatch endpoint (I3D-ResNet50 on 10 s "
                    "720p H.264 segments in S3 via moto) against a seed-style baseline.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--segments", type=int, default=4, help="distinct segments to render (4)")
    p.add_argument("--requests", type=int, default=12,
                   help="sequential requests for the low-load latency (12)")
    p.add_argument("--concurrency", type=int, default=2,
                   help="concurrent clients for the sustained throughput (2)")
    p.add_argument("--throughput-requests", type=int, default=16,
                   help="requests in the sustained-throughput run (16)")
    p.add_argument("--baseline-requests", type=int, default=6,
                   help="sequential seed-style requests (6)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="JSON results file (benchmarks/results/endpoint.json)")
    args = p.parse_args(argv)
    for name in ("segments", "requests", "concurrency", "throughput_requests", "baseline_requests"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def percentiles(values) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"median": round(float(np.median(v)), 1), "p90": round(float(np.percentile(v, 90)), 1)}


# ---------------------------------------------------------------------------------------------
# Setup: segments in S3, a model directory, the served endpoint
# ---------------------------------------------------------------------------------------------

def upload_segments(workdir: Path, count: int) -> list[str]:
    """Render ``count`` distinct segments and put them in S3; their keys."""
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


def build_model_dir(out: Path) -> Path:
    """The production network shape with random weights: timing does not depend on weights."""
    with console.status("building and exporting I3D-ResNet50 (101 classes)"):
        net = build_i3d(NUM_CLASSES, InputSpec())
        return save_model_dir(net, out, [f"class{i:03d}" for i in range(NUM_CLASSES)],
                              ModelCard(version="bench-i3d-r50", input=InputSpec()))


def serve(model_dir: Path, workdir: Path) -> BackgroundServer:
    with console.status("loading and warming up the endpoint"):
        classifier = load_classifier(model_dir)
        classifier.warm_up()
        settings = Settings(store_url=f"sqlite:///{workdir}/bench.db")
        return BackgroundServer(create_app(Endpoint.from_settings(classifier, settings)))


# ---------------------------------------------------------------------------------------------
# The endpoint, called as AWS callers call it
# ---------------------------------------------------------------------------------------------

def runtime_client(url: str):
    # No retries: a retried request would hide a failure and double-count its time. The read
    # timeout is generous because two-core CPUs with concurrent requests take seconds each.
    return boto3.client("sagemaker-runtime", endpoint_url=url, config=Config(
        read_timeout=600, retries={"mode": "standard", "total_max_attempts": 1}))


def invoke(client, key: str, sequence: int) -> dict:
    """One request; the endpoint's timings plus the client's wall latency under "client"."""
    # A distinct (stream, sequence) per request, so every store write is a real insert
    # rather than the cheaper duplicate path.
    body = json.dumps({"s3_uri": f"s3://{BUCKET}/{key}", "stream_id": STREAM, "sequence": sequence})
    start = time.perf_counter()
    resp = client.invoke_endpoint(EndpointName="clipwatch", ContentType="application/json",
                                  Accept="application/json", Body=body)
    prediction = json.loads(resp["Body"].read())
    wall_ms = (time.perf_counter() - start) * 1000.0
    if prediction.get("stored") is not True:
        console.print(f"[yellow]warning: sequence {sequence} was not stored as a new prediction")
    return {**prediction["timings_ms"], "client": round(wall_ms, 2)}


def measure_latency(url: str, keys: list[str], count: int, first_sequence: int) -> dict:
    client = runtime_client(url)
    # The first call pays for connection set-up and the endpoint's lazily made S3 client.
    cold = invoke(client, keys[0], first_sequence)
    samples = []
    with progress() as bar:
        task = bar.add_task("endpoint: sequential requests", total=count)
        for k in range(count):
            samples.append(invoke(client, keys[k % len(keys)], first_sequence + 1 + k))
            bar.advance(task)
    phases = {p: percentiles([s[p] for s in samples]) for p in (*ENDPOINT_PHASES, "client")}
    overhead = [s["client"] - s["total"] for s in samples]  # HTTP, boto3, JSON: outside `total`
    return {"phases_ms": phases, "http_overhead_ms": percentiles(overhead),
            "cold_request_ms": cold["client"], "samples": samples}


def measure_throughput(url: str, keys: list[str], count: int, concurrency: int,
                       first_sequence: int) -> dict:
    # Clients are made up front: they are long-lived in a real caller, and boto3's default
    # session is not safe to create clients from in several threads at once.
    clients = [runtime_client(url) for _ in range(concurrency)]

    def worker(w: int) -> list[dict]:
        return [invoke(clients[w], keys[k % len(keys)], first_sequence + k)
                for k in range(w, count, concurrency)]

    samples: list[dict] = []
    with progress() as bar, ThreadPoolExecutor(concurrency) as pool:
        task = bar.add_task(f"endpoint: {concurrency} concurrent clients", total=count)
        start = time.perf_counter()
        futures = [pool.submit(worker, w) for w in range(concurrency)]
        for future in as_completed(futures):
            got = future.result()
            samples.extend(got)
            bar.advance(task, len(got))
        wall = time.perf_counter() - start
    return {"concurrency": concurrency, "requests": count, "wall_s": round(wall, 2),
            "segments_per_min": round(count / wall * 60.0, 2),
            "client_latency_ms": percentiles([s["client"] for s in samples]),
            "model_ms": percentiles([s["model"] for s in samples])}


# ---------------------------------------------------------------------------------------------
# The seed-style baseline
# ---------------------------------------------------------------------------------------------

def seed_style_request(key: str, net, transform, frames: int = 32) -> dict:
    """One request done the way the seed's handler did it; phase times in ms."""
    import decord

    t = [time.perf_counter()]
    s3 = boto3.client("s3")  # the seed made its clients inside the handler, per request
    with tempfile.NamedTemporaryFile(suffix=".ts") as tmp:
        s3.download_file(BUCKET, key, tmp.name)
        t.append(time.perf_counter())
        vr = decord.VideoReader(tmp.name, width=340, height=256)
        mid = len(vr) // 2
        batch = vr.get_batch(list(range(mid - frames // 2, mid + frames // 2))).asnumpy()
        t.append(time.perf_counter())
    clip = transform([batch[i] for i in range(frames)])
    # GluonCV's I3D demo layout: (T, C, H, W) frames → (1, C, T, H, W).
    x = np.stack(clip, axis=0).reshape((-1, frames, 3, 224, 224)).transpose(0, 2, 1, 3, 4)
    t.append(time.perf_counter())
    # asnumpy() waits for MXNet's asynchronous engine, so the forward is really timed.
    probs = mx.nd.softmax(net(mx.nd.array(x))).asnumpy()
    probs.argmax()  # the seed's answer, its top class
    t.append(time.perf_counter())
    ms = [(b - a) * 1000.0 for a, b in zip(t, t[1:])]
    return {**dict(zip(BASELINE_PHASES, (round(v, 2) for v in ms))),
            "total": round((t[-1] - t[0]) * 1000.0, 2)}


def measure_baseline(keys: list[str], count: int) -> dict:
    import decord
    from gluoncv.data.transforms.video import VideoGroupValTransform

    decord.logging.set_level(decord.logging.QUIET)  # keep libav's seek warnings off the table
    with console.status("building the baseline network (imperative, not hybridized)"):
        net = build_i3d(NUM_CLASSES, InputSpec())
    transform = VideoGroupValTransform(size=224, mean=(0.485, 0.456, 0.406),
                                       std=(0.229, 0.224, 0.225))
    # Cold: the first imperative forward allocates every buffer; kept apart as on our side.
    cold = seed_style_request(keys[0], net, transform)
    samples = []
    with progress() as bar:
        task = bar.add_task("baseline: sequential seed-style requests", total=count)
        for k in range(count):
            samples.append(seed_style_request(keys[k % len(keys)], net, transform))
            bar.advance(task)
    phases = {p: percentiles([s[p] for s in samples]) for p in BASELINE_PHASES}
    median_s = phases["total"]["median"] / 1000.0
    return {"phases_ms": phases, "cold_request_ms": cold["total"], "samples": samples,
            "segments_per_min": round(60.0 / median_s, 2)}


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------

def phase_table(title: str, phases: dict, notes: dict[str, str]) -> Table:
    table = Table(title=title)
    table.add_column("phase")
    table.add_column("median ms", justify="right")
    table.add_column("p90 ms", justify="right")
    table.add_column("")
    for name, v in phases.items():
        table.add_row(name, f"{v['median']:.1f}", f"{v['p90']:.1f}", notes.get(name, ""))
    return table


def summary(ours: dict, throughput: dict, baseline: dict) -> dict:
    our_ms = ours["phases_ms"]["client"]["median"]
    base_ms = baseline["phases_ms"]["total"]["median"]
    return {
        "endpoint_median_latency_ms": our_ms,
        "endpoint_segments_per_min": throughput["segments_per_min"],
        "baseline_median_latency_ms": base_ms,
        "baseline_segments_per_min": baseline["segments_per_min"],
        "latency_ratio_baseline_over_endpoint": round(base_ms / our_ms, 2),
        "throughput_ratio_endpoint_over_baseline":
            round(throughput["segments_per_min"] / baseline["segments_per_min"], 2),
    }


def summary_table(figures: dict, concurrency: int) -> Table:
    table = Table(title="Endpoint vs seed-style baseline")
    table.add_column("")
    table.add_column("endpoint", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row("median latency (ms)", f"{figures['endpoint_median_latency_ms']:.0f}",
                  f"{figures['baseline_median_latency_ms']:.0f}",
                  f"{figures['latency_ratio_baseline_over_endpoint']:.2f}x faster")
    table.add_row(f"segments/min ({concurrency} clients | 60/median)",
                  f"{figures['endpoint_segments_per_min']:.1f}",
                  f"{figures['baseline_segments_per_min']:.1f}",
                  f"{figures['throughput_ratio_endpoint_over_baseline']:.2f}x more")
    return table


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor(), "python": platform.python_version(),
            "mxnet": mx.__version__, "loadavg_after": list(os.getloadavg())}


def write_results(out: Path, results: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    args = parse_args(argv)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_before = list(os.getloadavg())
    aws = LocalAws().start()
    aws.use()
    try:
        with tempfile.TemporaryDirectory(prefix="clipwatch-bench-") as tmp:
            workdir = Path(tmp)
            keys = upload_segments(workdir / "segments", args.segments)
            model_dir = build_model_dir(workdir / "model")
            with serve(model_dir, workdir) as server:
                ours = measure_latency(server.url, keys, args.requests, first_sequence=0)
                throughput = measure_throughput(server.url, keys, args.throughput_requests,
                                                args.concurrency,
                                                first_sequence=args.requests + 1)
            baseline = measure_baseline(keys, args.baseline_requests)
    finally:
        aws.stop()

    console.print(phase_table(
        f"Endpoint, low load ({args.requests} sequential requests)", ours["phases_ms"],
        {"total": "server side", "client": "boto3 wall time"}))
    console.print(f"HTTP + boto3 + JSON overhead (client - total): median "
                  f"{ours['http_overhead_ms']['median']:.1f} ms; cold first request "
                  f"{ours['cold_request_ms']:.0f} ms")
    console.print(f"Sustained: {throughput['requests']} requests from {throughput['concurrency']} "
                  f"clients in {throughput['wall_s']:.1f} s = "
                  f"[bold]{throughput['segments_per_min']:.1f} segments/min[/] (latency under "
                  f"load median {throughput['client_latency_ms']['median']:.0f} ms)")
    console.print(phase_table(
        f"Seed-style baseline ({args.baseline_requests} sequential requests)",
        baseline["phases_ms"], {"download": "new S3 client, download_file"}))
    console.print(f"Baseline cold first request {baseline['cold_request_ms']:.0f} ms")
    figures = summary(ours, throughput, baseline)
    console.print(summary_table(figures, args.concurrency))

    results = {
        "benchmark": "endpoint",
        "date": started,
        "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv),
        "machine": {**machine(), "loadavg_before": load_before},
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "model": "i3d_resnet50_v1_custom", "classes": NUM_CLASSES,
                   "input": InputSpec().model_dump(), "segment": SEGMENT},
        "summary": figures,
        "endpoint": {"low_load": ours, "sustained": throughput},
        "baseline": baseline,
    }
    write_results(args.out, results)
    console.print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
