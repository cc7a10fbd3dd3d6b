"""Does the endpoint's memory grow with use? 1,000 requests against `clipwatch serve`, RSS of
the endpoint (main process + decode workers) sampled every 25 requests.

The default serves the demo model on 10 s 640x360 segments, so 1,000 requests take minutes,
not an hour: what could leak (request handling, decode workers, the batcher, the store, the
S3 client) runs exactly as with I3D-R50 on 720p; the R50 peak RSS under load is reported by
benchmarks/endpoint.py.

    .venv/bin/python benchmarks/memory.py            # = make bench-memory
"""

from __future__ import annotations

import inference  # noqa: F401,I001

import argparse
import logging
import shlex
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import boto3
import numpy as np

from clipwatch.localstack import LocalAws
from clipwatch.testmedia import render_segment
from harness import BUCKET, ServerProcess, console, invoke, plot_rss, progress, runtime_client, save_results

DEMO_MODEL = Path(__file__).resolve().parent.parent / "models" / "demo"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / ".cache" / "benchmarks" / "memory.json"  # untracked
logging.getLogger("werkzeug").setLevel(logging.ERROR)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Endpoint RSS over many requests (leak check).",
                                epilog="example:\n  .venv/bin/python benchmarks/memory.py --requests 200",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--warmup", type=int, default=100,
                   help="requests before the baseline RSS is taken (allocators settle)")
    p.add_argument("--model", type=Path, default=DEMO_MODEL)
    p.add_argument("--size", default="640x360", help="segment size WxH (640x360)")
    p.add_argument("--serve-args", default="", help="extra `clipwatch serve` options")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.requests <= args.warmup:
        p.error("--requests must exceed --warmup")
    w, h = (int(v) for v in args.size.split("x"))
    aws = LocalAws().start()
    aws.use()
    points: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="clipwatch-memory-") as tmp:
            workdir = Path(tmp)
            s3 = boto3.client("s3")
            s3.create_bucket(Bucket=BUCKET)
            keys = []
            for i, pattern in enumerate(("testsrc2", "mandelbrot")):
                seg = render_segment(workdir / f"seg{i}.ts", seed=i, pattern=pattern, seconds=10,
                                     size=(w, h), fps=30, gop=60)
                s3.upload_file(str(seg), BUCKET, f"live/seg{i}.ts")
                keys.append(f"live/seg{i}.ts")
            with ServerProcess(args.model, workdir, shlex.split(args.serve_args)) as server:
                clients = [runtime_client(server.url) for _ in range(args.concurrency)]
                points.append({"requests": 0, **server.rss_mb()})
                done = 0
                start = time.perf_counter()
                with progress() as bar, ThreadPoolExecutor(args.concurrency) as pool:
                    task = bar.add_task("requests", total=args.requests)
                    while done < args.requests:
                        n = min(25, args.requests - done)
                        list(pool.map(lambda k: invoke(clients[k % args.concurrency],
                                                       keys[k % len(keys)], k),
                                      range(done, done + n)))
                        done += n
                        points.append({"requests": done, **server.rss_mb()})
                        bar.update(task, completed=done)
                wall = time.perf_counter() - start
    finally:
        aws.stop()

    after = [pt for pt in points if pt["requests"] >= args.warmup]
    x = np.array([pt["requests"] for pt in after], float)
    y = np.array([pt["total_mb"] for pt in after], float)
    slope = float(np.polyfit(x, y, 1)[0]) * 1000.0 if len(x) > 1 else 0.0
    result = {
        "benchmark": "memory", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]), "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}},
        "requests": args.requests, "wall_s": round(wall, 1),
        "rss_mb": {"start": points[0]["total_mb"], "after_warmup": after[0]["total_mb"],
                   "end": points[-1]["total_mb"], "peak": max(pt["total_mb"] for pt in points),
                   "peak_main": max(pt["main_mb"] for pt in points)},
        "growth_after_warmup_mb": round(points[-1]["total_mb"] - after[0]["total_mb"], 1),
        "slope_mb_per_1000_requests": round(slope, 1),
        "points": points,
    }
    save_results(result, args.out, _plot)
    r = result["rss_mb"]
    console.print(f"{args.requests} requests in {wall:.0f} s; endpoint RSS (main + workers): start "
                  f"{r['start']:.0f} MB, after {args.warmup} requests {r['after_warmup']:.0f} MB, "
                  f"end {r['end']:.0f} MB, peak {r['peak']:.0f} MB; growth after warm-up "
                  f"{result['growth_after_warmup_mb']:+.1f} MB (fit: "
                  f"{result['slope_mb_per_1000_requests']:+.1f} MB per 1,000 requests)")
    return 0


def _plot(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = result["points"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    plot_rss(ax, [p["requests"] for p in pts], pts, "requests served")
    ax.set_title(f"Endpoint memory over {result['requests']} requests "
                 f"(growth after warm-up {result['growth_after_warmup_mb']:+.1f} MB)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
