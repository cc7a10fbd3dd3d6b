"""Does the endpoint stay up and flat under sustained overload? Many more clients than it can
serve, for minutes: it must answer the excess at once with 429 (ThrottlingException through
boto3), keep serving what it admits, and hold its memory flat (no unbounded queue).

A sibling of memory.py: same server process, segments in S3 (moto), boto3's client without
retries; RSS of the endpoint (main process + decode workers) sampled every 10 s.

    .venv/bin/python benchmarks/overload.py                # 5 minutes, 24 clients, --max-queue 4
"""

from __future__ import annotations

import inference  # noqa: F401,I001

import argparse
import logging
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import boto3
import numpy as np
from botocore.exceptions import ClientError

from clipwatch.localstack import LocalAws
from clipwatch.testmedia import render_segment
from harness import BUCKET, ServerProcess, console, invoke, plot_rss, save_results, runtime_client

DEMO_MODEL = Path(__file__).resolve().parent.parent / "models" / "demo"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / ".cache" / "benchmarks" / "overload.json"  # untracked
logging.getLogger("werkzeug").setLevel(logging.ERROR)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Endpoint behaviour and RSS under sustained overload.",
                                epilog="example:\n  .venv/bin/python benchmarks/overload.py --minutes 1",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=24, help="concurrent clients, each sending back to back")
    p.add_argument("--model", type=Path, default=DEMO_MODEL)
    p.add_argument("--serve-args", default="--max-queue 4", help="`clipwatch serve` options")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    aws = LocalAws().start()
    aws.use()
    outcomes: Counter[str] = Counter()
    points: list[dict] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        with tempfile.TemporaryDirectory(prefix="clipwatch-overload-") as tmp:
            workdir = Path(tmp)
            s3 = boto3.client("s3")
            s3.create_bucket(Bucket=BUCKET)
            render_segment(workdir / "seg.ts", seconds=10, size=(640, 360), fps=30, gop=60)
            s3.upload_file(str(workdir / "seg.ts"), BUCKET, "live/seg.ts")
            with ServerProcess(args.model, workdir, shlex.split(args.serve_args)) as server:
                sequence = iter(range(10**9))

                def client() -> None:
                    runtime = runtime_client(server.url)
                    while not stop.is_set():
                        with lock:
                            n = next(sequence)
                        try:
                            invoke(runtime, "live/seg.ts", n)
                            outcome = "ok"
                        except ClientError as exc:
                            outcome = exc.response["Error"]["Code"]
                            time.sleep(0.05)  # back to back, but not a busy loop on our side
                        with lock:
                            outcomes[outcome] += 1

                threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
                start = time.monotonic()
                for t in threads:
                    t.start()
                end = start + args.minutes * 60
                with console.status(f"{args.clients} clients against `clipwatch serve {args.serve_args}` "
                                    f"for {args.minutes:g} min"):
                    while time.monotonic() < end:
                        with lock:
                            counts = dict(outcomes)
                        points.append({"s": round(time.monotonic() - start, 1), **server.rss_mb(), **counts})
                        time.sleep(min(10.0, max(0.0, end - time.monotonic())))
                stop.set()
                for t in threads:
                    t.join(timeout=120)
                points.append({"s": round(time.monotonic() - start, 1), **server.rss_mb(), **dict(outcomes)})
                alive = server.ping()["status"] == "healthy"
    finally:
        aws.stop()
    warm = [pt for pt in points if pt["s"] >= 60] or points
    slope = float(np.polyfit([pt["s"] for pt in warm], [pt["total_mb"] for pt in warm], 1)[0]) * 60 \
        if len(warm) > 1 else 0.0
    result = {
        "benchmark": "overload", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "outcomes": dict(outcomes), "healthy_after": alive,
        "served_per_min": round(outcomes["ok"] / args.minutes, 1),
        "rss_mb": {"first": points[0]["total_mb"], "after_1_min": warm[0]["total_mb"],
                   "end": points[-1]["total_mb"], "peak": max(pt["total_mb"] for pt in points)},
        "slope_mb_per_min_after_1_min": round(slope, 2), "points": points,
    }
    save_results(result, args.out, _plot)
    r = result["rss_mb"]
    console.print(f"{args.minutes:g} min, {args.clients} clients: {dict(outcomes)}; served "
                  f"{result['served_per_min']}/min; endpoint RSS {r['first']:.0f} → {r['end']:.0f} MB "
                  f"(peak {r['peak']:.0f}, {result['slope_mb_per_min_after_1_min']:+.2f} MB/min after the "
                  f"first minute); healthy after: {alive}")
    return 0


def _plot(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = result["points"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.5))
    plot_rss(ax, [p["s"] / 60 for p in pts], pts, "minutes of overload")
    for code in sorted({k for p in pts for k in p} - {"s", "total_mb", "main_mb", "processes"}):
        bx.plot([p["s"] / 60 for p in pts], [p.get(code, 0) for p in pts], label=code)
    bx.set_xlabel("minutes of overload")
    bx.set_ylabel("answers so far")
    bx.legend()
    fig.suptitle(f"{result['config']['clients']} clients, `clipwatch serve {result['config']['serve_args']}`",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
