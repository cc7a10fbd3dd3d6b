"""The review → retrain → gate → redeploy loop, measured on labelled synthetic streams.

The first ``--live`` streams play the live traffic: every segment goes through an endpoint that
follows a deployment of ``--model``, predictions and review tasks land in a SQLite store, and
simulated reviewers (``review.simulate``) label the queue with the streams' ground truth. Then
``training.retrain`` fine-tunes, gates and promotes; the same endpoint picks the promoted model
up (``Endpoint.follow``). The remaining streams, which neither model has seen, are scored by
both models (the candidate too when the gate refused it: what the gate kept out): top-1 over
all their segments and over the ones the old model got wrong.

    .venv/bin/python benchmarks/retrain_loop.py --streams .cache/routing-streams \
        --data .cache/synth-demo --live 30 --out benchmarks/results/retrain_loop.json
    .venv/bin/python benchmarks/retrain_loop.py --streams .cache/hard-streams \
        --data .cache/synth-demo --live 4 --out benchmarks/results/retrain_loop_hard.json

(``clipwatch synth --live --streams 60 --segments 12 --seed 1000 --out .cache/routing-streams``,
``clipwatch synth --live --streams 8 --segments 12 --seed 1 --size 320x180 --hard tiny --out
.cache/hard-streams`` and ``clipwatch synth --out .cache/synth-demo --clips-per-class 250
--seed 5`` make the data.) Simulated reviewers give whole-clip labels of 10 s segments.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import inference  # noqa: F401  -- sets MXNet's thread count before MXNet loads

ROOT = Path(__file__).resolve().parents[1]


def run(endpoint, streams, progress) -> dict:
    """Every labelled segment of ``streams`` through ``endpoint`` (``training.routing.collect``):
    {(stream, sequence): Observation}. Every label a segment shows counts as right (two
    activities at once); simulated reviewers name the first."""
    from training.routing import collect

    return {(o.stream, o.prediction.sequence): o for o in collect(endpoint, streams, progress)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "demo")
    ap.add_argument("--streams", type=Path, default=ROOT / ".cache" / "routing-streams")
    ap.add_argument("--data", type=Path, default=ROOT / ".cache" / "synth-demo")
    ap.add_argument("--live", type=int, default=30, help="streams served and reviewed; the rest test")
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "benchmarks" / "retrain_loop.json")
    ap.add_argument("--keep", action="store_true", help="keep the deployment, store and candidate")
    args = ap.parse_args()

    from rich.progress import Progress

    from clipwatch.blobs import SegmentReader
    from clipwatch.store import open_store
    from inference.deployment import promote
    from inference.model import load_classifier
    from inference.predictor import Endpoint
    from review.service import ReviewService
    from review.simulate import review_queue
    from training.plots import plot_gate
    from training.retrain import retrain
    from training.routing import find_streams

    streams = find_streams(args.streams)
    live, test = streams[:args.live], streams[args.live:]
    work = Path(tempfile.mkdtemp(prefix="retrain-loop-"))
    deploy = work / "deploy"
    promote(args.model, deploy, {"by": "benchmark"})
    store = open_store(f"sqlite:///{work / 'preds.db'}")
    reader = SegmentReader(allowed_dirs=(args.streams.resolve(),))
    endpoint = Endpoint(load_classifier(deploy), reader, store, propose=False)
    endpoint.follow(deploy, load_classifier, interval=3600)  # checked by hand below
    old = Endpoint(load_classifier(deploy), reader, None, propose=False)
    started = time.monotonic()
    try:
        with Progress() as progress:
            served = run(endpoint, live, progress)
            tasks = len(store.review_tasks("pending", 100_000))
            service = ReviewService(store, endpoint.classifier.classes, timing_of=lambda uri: (10.0, 30.0))
            reviewed = review_queue(service, lambda s, q: served[(s, q)].truth[0])
            before = run(old, test, progress)
            report = retrain(deploy, store, reader, args.data, progress=False)
            swapped = endpoint.watcher.check()
            if report["promoted"]:  # the endpoint that served the live streams now runs it
                after = run(endpoint, test, progress)
            else:  # what the gate kept out, scored all the same
                candidate = Endpoint(load_classifier(report["candidate"]), reader, None, propose=False)
                try:
                    after = run(candidate, test, progress)
                finally:
                    candidate.close()
    finally:
        endpoint.close()
        old.close()
    right_before = {k: not o.wrong for k, o in before.items()}
    right_after = {k: not o.wrong for k, o in after.items()}
    hard = [k for k, ok in right_before.items() if not ok]
    result = {
        "model": str(args.model), "streams": str(args.streams), "data": str(args.data),
        "live_streams": len(live), "test_streams": len(test), "live_segments": len(served),
        "review_tasks": tasks, "reviewed": reviewed, "seconds": round(time.monotonic() - started, 1),
        "promoted": report["promoted"], "reason": report["reason"], "swapped_without_restart": swapped,
        "versions": {"old": report["serving_version"], "new": report["candidate_version"],
                     "scored_after": sorted({o.prediction.model_version for o in after.values()})},
        "gate": report.get("gate"), "reviewed_split": report["reviewed"],
        "test": {"segments": len(before),
                 "old_top1": round(sum(right_before.values()) / len(before), 3),
                 "new_top1": round(sum(right_after.values()) / len(after), 3),
                 "old_wrong": len(hard), "new_right_of_those": sum(right_after[k] for k in hard),
                 "new_wrong_where_old_right": sum(right_before[k] and not right_after[k] for k in before)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    if report.get("gate"):
        plot_gate(report["gate"], args.out.with_suffix(".png"))
    if args.keep:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: result[k] for k in ("reviewed", "promoted", "reason", "versions", "test")}, indent=1))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
