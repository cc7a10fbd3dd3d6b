"""How much the demo's auto-accepted predictions can be trusted, over several seeds.

Runs ``clipwatch demo --segments N --seed S --no-real`` for each seed (each its own synthetic live
stream, ground truth known) and tabulates what each summary says: accuracy, review rate,
auto-accepted accuracy, what routed the flagged segments. Seeds 1000 and up are the routing
calibration streams (``clipwatch synth --live --streams``); the defaults here are not among them.

    .venv/bin/python benchmarks/demo_seeds.py --seeds 7 11 23 42 99 --segments 12 \
        --out benchmarks/results/demo_seeds.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("segments", "accuracy", "review_rate", "auto_accepted", "auto_accepted_accuracy", "routed_because")


def run_seed(seed: int, segments: int, out: Path) -> dict:
    folder = out / f"seed-{seed}"
    subprocess.run([sys.executable, "-m", "clipwatch.cli", "demo", "--segments", str(segments), "--seed",
                    str(seed), "--no-real", "--out", str(folder)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    summary = json.loads((folder / "summary.json").read_text())["summary"]
    return {"seed": seed, **{k: summary.get(k) for k in KEYS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 23, 42, 99])
    ap.add_argument("--segments", type=int, default=12)
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "demo-seeds")
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "benchmarks" / "demo_seeds.json")
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        rows.append(run_seed(seed, args.segments, args.work))
        print(json.dumps(rows[-1]), flush=True)
    accepted = sum(r["auto_accepted"] for r in rows)
    right = sum(round(r["auto_accepted_accuracy"] * r["auto_accepted"]) for r in rows
                if r["auto_accepted_accuracy"] is not None)
    total = sum(r["segments"] for r in rows)
    pooled = {"segments": total, "auto_accepted": accepted,
              "auto_accepted_accuracy": round(right / accepted, 3) if accepted else None,
              "review_rate": round(sum(r["review_rate"] * r["segments"] for r in rows) / total, 3),
              "accuracy": round(sum(r["accuracy"] * r["segments"] for r in rows) / total, 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"segments_per_seed": args.segments, "seeds": rows, "pooled": pooled},
                                   indent=1) + "\n")
    print("pooled:", json.dumps(pooled))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
