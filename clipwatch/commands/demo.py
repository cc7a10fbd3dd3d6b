"""`clipwatch demo`: the main job on embedded defaults."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _demo(args) -> int:
    from clipwatch.demo import run

    run(out_dir=Path(args.out), segments=args.segments, seed=args.seed, keep_serving=args.keep_serving)
    return 0


def register(sub) -> None:
    demo = sub.add_parser(
        "demo", help="the main job on embedded defaults (synthetic live stream, local S3/SQS, Lambda, endpoint, SQLite)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  clipwatch demo --segments 8 --out demo-output")
    demo.add_argument("--segments", type=int, default=8, help="10 s segments of the synthetic stream")
    demo.add_argument("--seed", type=int, default=7, help="which synthetic stream")
    demo.add_argument("--out", default="demo-output")
    demo.add_argument("--keep-serving", action="store_true", help="leave the endpoint up afterwards")
    demo.set_defaults(run=_demo)
