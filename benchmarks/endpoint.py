"""Benchmark of the clipwatch endpoint against a faithful baseline of the seed, in one run.

What is measured
----------------
Two workloads (``--model``). ``kinetics400``: DeepMind's Kinetics-400 I3D as ``clipwatch model
fetch`` converts it (32 consecutive frames, short side 256, 224² crop) on real footage
(``clipwatch.footage``) re-encoded as 1280x720 H.264 segments, against the seed's approach
running the same converted weights through GluonCV's loader and an imperative Gluon network in
MXNet fp32; served as `clipwatch serve --model kinetics400` serves it by default.
``r50`` (the default): I3D-ResNet50 (GluonCV ``i3d_resnet50_v1_custom``, 101
classes as UCF101, random weights; 32 frames 2 apart, 224x224 crop) on 10 s 1280x720 30 fps
H.264 MPEG-TS segments (2 s GOP), as a live HLS encoder writes them, in S3 served by moto over
HTTP on loopback, called through boto3's own ``sagemaker-runtime`` client.

0. **Learning.** The endpoint (`clipwatch serve`, its own process, default settings: PyAV
   decoding in worker processes, batching, no int8 module made beforehand) starts on its safe
   precision and learns its runtime and int8 from what it serves (``inference.auto_int8``, with
   a cache of its own, so every run starts from nothing): distinct segments cut from real
   footage (not the timed ones: a segment served again counts once) are sent one at a time
   until it settled, and how many and how long that took, and what it chose, are recorded.
1. **Low-load latency.** Sequential requests: per-phase server timings and the client's wall
   latency, median and p90.
2. **Sustained throughput.** C clients at once (enough to keep the endpoint saturated), each
   with its own boto3 client: segments/min = requests / wall seconds * 60. Meanwhile the
   endpoint's resident memory (main process + decode workers) is sampled: peak RSS under load.
3. **The seed's approach, faithfully.** Per request: a new boto3 client, download to a
   temporary file, GluonCV's ``VideoClsCustom`` loader (decord on the file, its validation
   sampling of 32 frames 2 apart, ``VideoGroupValTransform``), an imperative (not hybridized)
   MXNet forward, softmax, top class. Sequential, as the seed ran: throughput = 60 / median.
   It writes nothing to a store, so it is slightly favoured.
4. **Agreement.** Top-1 agreement of the served path (same decoder and precision, the demo
   model's own int8 module) with the fp32 GluonCV/MXNet reference path on held-out synthetic
   clips for the demo model (``benchmarks/agreement.py``).

Steps 1–3 are repeated ``--repeats`` times (3), interleaved, the endpoint idle while the baseline
runs; the summary gives the median of the rounds and the baseline's spread across them. The
machine may be shared: compare the ratios of one run, not runs.
"""

from __future__ import annotations

# `inference` sets MXNet's OpenMP thread count, which MXNet reads when first imported; MXNet must
# be loaded before decord (with decord first, MXNet's first forward segfaults).
import inference  # noqa: F401,I001
import mxnet as mx  # noqa: I001

import argparse
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
from rich.table import Table

import harness
from agreement import measure_agreement, measure_real_agreement
from clipwatch.localstack import LocalAws
from harness import (BUCKET, NUM_CLASSES, SEGMENT, RssSampler, ServerProcess, build_r50_model_dir,
                     calibrate_int8, console, invoke, percentiles, progress, runtime_client, save_results,
                     upload_footage, upload_learning_segments, upload_segments)
from inference.auto_int8 import LEARNING
from inference.decode import scaled_size
from inference.model import InputSpec, ModelCard

ENDPOINT_PHASES = ("fetch", "decode", "preprocess", "model", "signals", "store", "total")
BASELINE_PHASES = ("download", "decode", "preprocess", "model", "total")
# A run writes into the untracked cache; the figures the README cites were recorded with
# --out benchmarks/results/… on purpose (a plain `make bench` never rewrites them).
RUNS = Path(__file__).resolve().parents[1] / ".cache" / "benchmarks"
DEFAULT_OUT = RUNS / "endpoint.json"
# issue 16's bars, for both models on the default serving path
BARS = {"r50": {"throughput_ratio": 10.0, "median_latency_ms": 300.0, "agreement": 0.99},
        "kinetics400": {"throughput_ratio": 10.0, "median_latency_ms": 300.0, "agreement": 0.99}}

EXAMPLE = """\
example (a quick check, then the default run, then another runtime for comparison):
  .venv/bin/python benchmarks/endpoint.py --segments 2 --requests 3 --throughput-requests 4 \\
      --baseline-requests 2 --agreement-clips-per-class 3 --repeats 1 --learn-requests 2 --learn-segments 2
  .venv/bin/python benchmarks/endpoint.py                       # = make bench (→ .cache/benchmarks/)
  .venv/bin/python benchmarks/endpoint.py --out benchmarks/results/endpoint.json   # record the figures
  .venv/bin/python benchmarks/endpoint.py --serve-args="--precision bf16" \\
      --out benchmarks/results/endpoint-bf16.json
  .venv/bin/python benchmarks/endpoint.py --model kinetics400   # DeepMind's I3D, real footage
  .venv/bin/python benchmarks/endpoint.py --model kinetics400 --serve-args="--runtime openvino" \\
      --out benchmarks/results/endpoint-kinetics400-openvino.json
"""

# moto's werkzeug logs every S3 call, and MXNet's export warns about an untyped input: both
# would bury the tables.
logging.getLogger("werkzeug").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", category=UserWarning, module="mxnet")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Latency, throughput, memory and agreement of the clipwatch endpoint "
                    "(I3D-ResNet50 on 10 s 720p H.264 segments, or DeepMind's Kinetics I3D on "
                    "real footage, in S3 via moto) against a faithful baseline of the seed, in "
                    "one run.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("r50", "kinetics400"), default="r50",
                   help="r50 (default): I3D-ResNet50, random weights, rendered segments; "
                        "kinetics400: DeepMind's I3D on real footage (serve args default to none)")
    p.add_argument("--segments", type=int, default=4, help="distinct segments to render (4; r50)")
    p.add_argument("--requests", type=int, default=12,
                   help="sequential requests for the low-load latency (12)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="concurrent clients for the sustained throughput (4)")
    p.add_argument("--throughput-requests", type=int, default=40,
                   help="requests in the sustained-throughput run (40)")
    p.add_argument("--baseline-requests", type=int, default=5,
                   help="sequential seed-style requests (5)")
    p.add_argument("--agreement-clips-per-class", type=int, default=30,
                   help="held-out synthetic clips per class for the agreement check (30; 0 skips)")
    p.add_argument("--serve-args", default="",
                   help='`clipwatch serve` options (default none: the default serving path), e.g. '
                        '"--runtime mxnet --decode-workers 0"; "--precision int8" serves an int8 '
                        'module calibrated on the benchmark segments beforehand (clipwatch quantize)')
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds of latency, throughput and baseline (3): medians reported")
    p.add_argument("--learn-requests", type=int, default=400,
                   help="at most this many requests while the endpoint learns its runtime and int8 (400)")
    p.add_argument("--learn-segments", type=int, default=140,
                   help="distinct real-footage segments it learns from (140: 6 to time OpenVINO, "
                        "16 to calibrate, 100 to check, and spares for the ones it misses while busy)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON results file, a .png beside it (default .cache/benchmarks/endpoint.json "
                        "or endpoint-kinetics400.json; the README's figures are in benchmarks/results/)")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = DEFAULT_OUT if args.model == "r50" else \
            DEFAULT_OUT.with_name("endpoint-kinetics400.json")
    for name in ("segments", "requests", "concurrency", "throughput_requests", "baseline_requests", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


# ---------------------------------------------------------------------------------------------
# The endpoint
# ---------------------------------------------------------------------------------------------

def learn_precision(server: ServerProcess, keys: list[str], limit: int) -> dict:
    """Sequential requests until the endpoint's runtime and int8 learning settled
    (``inference.auto_int8``)."""
    client = runtime_client(server.url)
    started, sent = time.perf_counter(), 0
    with progress() as bar:
        task = bar.add_task("endpoint: serving while it learns its runtime and int8", total=None)
        while server.ping()["precision"]["auto_int8"] in LEARNING and sent < limit:
            invoke(client, keys[sent % len(keys)], 1_000_000 + sent)
            sent += 1
            bar.advance(task)
    precision = server.ping()["precision"]
    console.print(f"precision after {sent} requests ({time.perf_counter() - started:.0f} s): {precision['reason']}")
    return {"requests": sent, "seconds": round(time.perf_counter() - started, 1), **precision}


def measure_latency(url: str, keys: list[str], count: int, first_sequence: int) -> dict:
    client = runtime_client(url)
    # The first call pays for connection set-up and the endpoint's lazily made S3 client.
    cold = invoke(client, keys[0], first_sequence)
    samples = []
    with progress() as bar:
        task = bar.add_task("endpoint: sequential requests (low load)", total=count)
        for k in range(count):
            samples.append(invoke(client, keys[k % len(keys)], first_sequence + 1 + k))
            bar.advance(task)
    phases = {p: percentiles([s[p] for s in samples]) for p in (*ENDPOINT_PHASES, "client")}
    overhead = [s["client"] - s["total"] for s in samples]  # HTTP, boto3, JSON: outside `total`
    return {"phases_ms": phases, "http_overhead_ms": percentiles(overhead),
            "cold_request_ms": cold["client"], "samples": samples}


def measure_throughput(server: ServerProcess, keys: list[str], count: int, concurrency: int,
                       first_sequence: int) -> dict:
    # Clients are made up front: they are long-lived in a real caller, and boto3's default
    # session is not safe to create clients from in several threads at once.
    clients = [runtime_client(server.url) for _ in range(concurrency)]

    def worker(w: int) -> list[dict]:
        return [invoke(clients[w], keys[k % len(keys)], first_sequence + k)
                for k in range(w, count, concurrency)]

    samples: list[dict] = []
    with (progress() as bar, ThreadPoolExecutor(concurrency) as pool,
          RssSampler(server) as rss):
        task = bar.add_task(f"endpoint: {concurrency} concurrent clients (saturated)", total=count)
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
            "phases_ms": {p: percentiles([s[p] for s in samples]) for p in ENDPOINT_PHASES},
            "peak_rss_mb": rss.peak()}


# ---------------------------------------------------------------------------------------------
# The seed's approach
# ---------------------------------------------------------------------------------------------

class TimedTransform:
    """GluonCV's transform, timed, so the loader's decode and preprocess are told apart."""

    def __init__(self, transform):
        self.transform, self.seconds = transform, 0.0

    def __call__(self, clip):
        start = time.perf_counter()
        try:
            return self.transform(clip)
        finally:
            self.seconds = time.perf_counter() - start


def seed_request(key: str, net, spec: InputSpec, num_frames: int) -> dict:
    """One request done the way the seed's handler did it; phase times in ms."""
    from gluoncv.data import VideoClsCustom
    from gluoncv.data.transforms.video import VideoGroupValTransform

    t0 = time.perf_counter()
    s3 = boto3.client("s3")  # the seed made its clients inside the handler, per request
    with tempfile.TemporaryDirectory(prefix="seed-") as tmp:
        video = Path(tmp) / "segment.ts"
        s3.download_file(BUCKET, key, str(video))
        t1 = time.perf_counter()
        setting = Path(tmp) / "request.txt"
        setting.write_text(f"{video} {num_frames} 0\n")
        transform = TimedTransform(VideoGroupValTransform(size=spec.crop, mean=spec.mean,
                                                          std=spec.std))
        width, height = scaled_size(*SEGMENT["size"], spec.resize)
        dataset = VideoClsCustom(
            root=tmp, setting=str(setting), train=False, new_length=spec.frames,
            new_step=spec.stride, new_width=width, new_height=height,
            target_width=spec.crop, target_height=spec.crop, video_loader=True, use_decord=True,
            transform=transform)
        clip, _ = dataset[0]  # (1, 3, T, 224, 224)
        t2 = time.perf_counter()
    # asnumpy() waits for MXNet's asynchronous engine, so the forward is really timed.
    probs = mx.nd.softmax(net(clip)).asnumpy()
    int(probs.argmax())  # the seed's answer, its top class
    t3 = time.perf_counter()
    loader_ms = (t2 - t1) * 1000.0
    ms = {"download": (t1 - t0) * 1000.0, "decode": loader_ms - transform.seconds * 1000.0,
          "preprocess": transform.seconds * 1000.0, "model": (t3 - t2) * 1000.0,
          "total": (t3 - t0) * 1000.0}
    return {k: round(v, 2) for k, v in ms.items()}


def baseline_network(model: str, model_dir: Path):
    """The seed's network, imperative (not hybridized): GluonCV's I3D-R50, or DeepMind's I3D as
    a Gluon block holding the converted directory's weights. Returns (net, input spec)."""
    if model == "r50":
        from inference.model import build_i3d

        spec = InputSpec()
        return build_i3d(NUM_CLASSES, spec), spec
    from inference import inception_i3d

    card = ModelCard.model_validate_json((model_dir / "model.json").read_text())
    classes = (model_dir / "classes.txt").read_text().split()
    net = inception_i3d.build(len(classes), card.input.frames, card.input.crop)
    net.collect_params().load(str(model_dir / "model-0000.params"), mx.cpu())
    return net, card.input


def measure_baseline(keys: list[str], count: int, net, spec: InputSpec, frames: dict[str, int]) -> dict:
    import decord

    from inference.gluoncv_compat import import_gluoncv

    import_gluoncv()
    decord.logging.set_level(decord.logging.QUIET)  # keep libav's seek warnings off the table
    # Cold: the first imperative forward allocates every buffer; kept apart as on our side.
    cold = seed_request(keys[0], net, spec, frames[keys[0]])
    samples = []
    with progress() as bar:
        task = bar.add_task("baseline: sequential seed-style requests", total=count)
        for k in range(count):
            key = keys[k % len(keys)]
            samples.append(seed_request(key, net, spec, frames[key]))
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


def summary(ours: dict, throughput: dict, baseline: dict, agreement: dict | None,
            bars: dict) -> dict:
    our_ms = ours["phases_ms"]["client"]["median"]
    base_ms = baseline["phases_ms"]["total"]["median"]
    figures = {
        "endpoint_median_latency_ms": our_ms,
        "endpoint_segments_per_min": throughput["segments_per_min"],
        "endpoint_peak_rss_mb": throughput["peak_rss_mb"]["total_mb"],
        "baseline_median_latency_ms": base_ms,
        "baseline_segments_per_min": baseline["segments_per_min"],
        "latency_ratio_baseline_over_endpoint": round(base_ms / our_ms, 2),
        "throughput_ratio_endpoint_over_baseline":
            round(throughput["segments_per_min"] / baseline["segments_per_min"], 2),
        "agreement": agreement["served"]["agreement"] if agreement else None,
    }
    figures["bars"] = bars_met(figures, bars)
    return figures


def bars_met(figures: dict, bars: dict) -> dict[str, bool | None]:
    return {
        f"throughput_ratio >= {bars['throughput_ratio']:g}":
            figures["throughput_ratio_endpoint_over_baseline"] >= bars["throughput_ratio"],
        f"median_latency <= {bars['median_latency_ms']:g} ms":
            figures["endpoint_median_latency_ms"] <= bars["median_latency_ms"],
        f"agreement >= {bars['agreement']:g}":
            None if figures["agreement"] is None else figures["agreement"] >= bars["agreement"],
    }


def median_summary(rounds: list[dict], agreement: dict | None, bars: dict) -> dict:
    """The rounds' medians (ratios taken within each round first), the baseline's spread."""
    first = rounds[0]
    figures = summary(first["low_load"], first["sustained"], first["baseline"], agreement, bars)
    for key in ("endpoint_median_latency_ms", "endpoint_segments_per_min", "endpoint_peak_rss_mb",
                "baseline_median_latency_ms", "baseline_segments_per_min",
                "latency_ratio_baseline_over_endpoint", "throughput_ratio_endpoint_over_baseline"):
        figures[key] = round(float(np.median([r["summary"][key] for r in rounds])), 2)
    spread = [r["summary"]["baseline_median_latency_ms"] for r in rounds]
    figures["baseline_latency_spread_ms"] = [min(spread), max(spread)]
    figures["rounds"] = len(rounds)
    figures["bars"] = bars_met(figures, bars)
    return figures


def summary_table(figures: dict, concurrency: int, backend: str) -> Table:
    table = Table(title=f"Endpoint ({backend}) vs the seed's approach")
    table.add_column("")
    table.add_column("endpoint", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row("median latency, low load (ms)", f"{figures['endpoint_median_latency_ms']:.0f}",
                  f"{figures['baseline_median_latency_ms']:.0f}",
                  f"{figures['latency_ratio_baseline_over_endpoint']:.2f}x faster")
    table.add_row(f"segments/min ({concurrency} clients | 60/median)",
                  f"{figures['endpoint_segments_per_min']:.1f}",
                  f"{figures['baseline_segments_per_min']:.1f}",
                  f"{figures['throughput_ratio_endpoint_over_baseline']:.2f}x more")
    return table


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = results["endpoint"]["low_load"]["phases_ms"]
    base = results["baseline"]["phases_ms"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    names = ("fetch/download", "decode", "preprocess", "model", "store")
    keys_ours = ("fetch", "decode", "preprocess", "model", "store")
    keys_base = ("download", "decode", "preprocess", "model", None)
    colors = ("#8da0cb", "#fc8d62", "#e78ac3", "#66c2a5", "#a6d854")
    left = [0.0, 0.0]
    for name, ko, kb, c in zip(names, keys_ours, keys_base, colors):
        widths = [ours[ko]["median"], base[kb]["median"] if kb else 0.0]
        ax1.barh(["endpoint", "seed approach"], widths, left=left, color=c, label=name)
        left = [a + b for a, b in zip(left, widths)]
    ax1.set_xlabel("median ms per segment at low load (server side)")
    ax1.legend(loc="lower right", fontsize=8)
    ax1.set_title("Where a segment's time goes")
    s = results["summary"]
    ax2.bar(["endpoint", "seed approach"],
            [s["endpoint_segments_per_min"], s["baseline_segments_per_min"]], color=["#1b9e77", "#999999"])
    ax2.set_ylabel("segments / min")
    ax2.set_title(f"Throughput: {s['throughput_ratio_endpoint_over_baseline']:.1f}x")
    fig.suptitle(f"{results['config']['model']}, 720p H.264 segments, {results['endpoint']['backend']} "
                 f"({results['date'][:10]}, {results['machine']['cpu_count']} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor(), "python": platform.python_version(),
            "mxnet": mx.__version__, "loadavg_after": list(os.getloadavg())}


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
            int8 = None
            if args.model == "r50":
                keys = upload_segments(workdir / "segments", args.segments)
                frames = {k: SEGMENT["seconds"] * SEGMENT["fps"] for k in keys}
                model_dir = build_r50_model_dir(workdir / "model")
                if "int8" in _runtime_of(args.serve_args)["precision"]:
                    int8 = calibrate_int8(model_dir, sorted((workdir / "segments").glob("*.ts")))
            else:
                from inference.model_fetch import fetch

                frames = upload_footage(workdir / "segments")
                keys = list(frames)
                model_dir = fetch("kinetics400", progress=False)
            # the endpoint learns its runtime and int8 from nothing (its own cache), on distinct
            # segments other than the timed ones; the agreement check below reads what it learnt
            os.environ["CLIPWATCH_INT8_CACHE"] = str(workdir / "int8")
            learn_keys = upload_learning_segments(workdir / "learn", args.learn_segments)
            with console.status("building the baseline network (imperative, not hybridized)"):
                net, spec = baseline_network(args.model, model_dir)
            rounds, sequence = [], 0
            with ServerProcess(model_dir, workdir, shlex.split(args.serve_args)) as server:
                learning = learn_precision(server, learn_keys, args.learn_requests)
                info = server.ping()
                rss_idle = server.rss_mb()
                for r in range(args.repeats):
                    console.rule(f"round {r + 1} of {args.repeats}")
                    ours = measure_latency(server.url, keys, args.requests, first_sequence=sequence)
                    sequence += args.requests + 1
                    throughput = measure_throughput(server, keys, args.throughput_requests,
                                                    args.concurrency, first_sequence=sequence)
                    sequence += args.throughput_requests
                    baseline = measure_baseline(keys, args.baseline_requests, net, spec, frames)
                    rounds.append({"low_load": ours, "sustained": throughput, "baseline": baseline,
                                   "summary": summary(ours, throughput, baseline, None, BARS[args.model])})
            agreement = None
            # what it learnt (a runtime, int8, or that int8 failed its check) is what is measured
            learnt = learning.get("auto_int8") not in (None, "off")
            if args.model == "kinetics400":
                agreement = measure_real_agreement(workdir / "segments", model_dir, learnt_int8=learnt,
                                                   **_runtime_of(args.serve_args))
            elif args.agreement_clips_per_class > 0:
                agreement = measure_agreement(workdir, clips_per_class=args.agreement_clips_per_class,
                                              learn_int8=learnt, **_runtime_of(args.serve_args))
    finally:
        aws.stop()

    # the round with the median throughput ratio is shown in detail; the figures are medians
    ratios = [r["summary"]["throughput_ratio_endpoint_over_baseline"] for r in rounds]
    middle = rounds[int(np.argsort(ratios)[len(ratios) // 2])]
    ours, throughput, baseline = middle["low_load"], middle["sustained"], middle["baseline"]
    backend = f"{info.get('backend', '?')}, {info.get('decoder', '?')}"
    console.print(phase_table(
        f"Endpoint ({backend}), low load ({args.requests} sequential requests)", ours["phases_ms"],
        {"total": "server side", "client": "boto3 wall time", "model": "incl. batch queue"}))
    console.print(f"HTTP + boto3 + JSON overhead (client - total): median "
                  f"{ours['http_overhead_ms']['median']:.1f} ms; cold first request "
                  f"{ours['cold_request_ms']:.0f} ms")
    console.print(f"Sustained: {throughput['requests']} requests from {throughput['concurrency']} "
                  f"clients in {throughput['wall_s']:.1f} s = "
                  f"[bold]{throughput['segments_per_min']:.1f} segments/min[/] (latency under "
                  f"load median {throughput['client_latency_ms']['median']:.0f} ms)")
    peak = throughput["peak_rss_mb"]
    console.print(f"Endpoint RSS: idle {rss_idle['total_mb']:.0f} MB; peak under load "
                  f"{peak['total_mb']:.0f} MB ({peak['processes']} processes; main process "
                  f"{peak['main_mb']:.0f} MB)")
    console.print(phase_table(
        f"The seed's approach ({args.baseline_requests} sequential requests)",
        baseline["phases_ms"], {"download": "new S3 client, temp file",
                                "decode": "GluonCV VideoClsCustom (decord)",
                                "preprocess": "VideoGroupValTransform",
                                "model": "imperative MXNet fp32"}))
    console.print(f"Baseline cold first request {baseline['cold_request_ms']:.0f} ms")
    if agreement:
        served = agreement["served"]
        console.print(f"Agreement with the fp32 GluonCV/MXNet reference on {agreement['clips']} "
                      f"{'real clips' if args.model == 'kinetics400' else 'held-out synthetic clips'} "
                      f"({agreement['model_version']}): "
                      f"[bold]{served['agreement']:.2%}[/] ({served['disagreements']} differ; "
                      f"accuracy {served['accuracy']:.1%} vs reference "
                      f"{agreement['reference_accuracy']:.1%})")
    figures = median_summary(rounds, agreement, BARS[args.model])
    console.print(summary_table(figures, args.concurrency, backend))
    console.print(f"medians of {len(rounds)} rounds; the baseline's median latency ranged "
                  f"{figures['baseline_latency_spread_ms'][0]:.0f}–{figures['baseline_latency_spread_ms'][1]:.0f} ms "
                  f"across them; throughput ratios per round: {', '.join(f'{x:.2f}' for x in ratios)}")
    for bar, ok in figures["bars"].items():
        mark = "[green]met[/]" if ok else ("[red]NOT met[/]" if ok is False else "not measured")
        console.print(f"  bar {bar}: {mark}")

    results = {
        "benchmark": "endpoint",
        "date": started,
        "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv),
        "machine": {**machine(), "loadavg_before": load_before},
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   **_workload(args.model, model_dir)},
        "summary": figures,
        "endpoint": {"backend": backend, "ping": info, "learning": learning, "low_load": ours,
                     "sustained": throughput, "rss_idle_mb": rss_idle, "int8_module": int8},
        "baseline": baseline,
        "rounds": [r["summary"] for r in rounds],
        "agreement": agreement,
    }
    save_results(results, args.out, plot)
    return 0


def _workload(model: str, model_dir: Path) -> dict:
    if model == "r50":
        return {"model": "i3d_resnet50_v1_custom", "classes": NUM_CLASSES,
                "input": InputSpec().model_dump(), "segment": SEGMENT}
    card = ModelCard.model_validate_json((model_dir / "model.json").read_text())
    return {"model": card.version, "classes": 400, "input": card.input.model_dump(),
            "segment": {**SEGMENT, "footage": list(harness.FOOTAGE)}}


def _runtime_of(serve_args: str) -> dict[str, str]:
    """The --runtime/--precision/--decoder the endpoint was served with, for the agreement check."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--decoder", default="pyav")
    known, _ = parser.parse_known_args(shlex.split(serve_args))
    return {"runtime": known.runtime, "precision": known.precision, "decoder": known.decoder}


if __name__ == "__main__":
    sys.exit(main())
