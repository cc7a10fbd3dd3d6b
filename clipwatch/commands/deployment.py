"""`clipwatch deploy` and `clipwatch retrain`: a deployment the endpoints follow, and the loop
that feeds it — reviewed labels → fine-tune → gate → promotion, without restarting anything."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .review import _reader, _store_options


def _deploy(args) -> int:
    from inference.deployment import DeploymentError, promote

    try:
        target = promote(Path(args.model), Path(args.to), {"by": "clipwatch deploy", "source": args.model})
    except DeploymentError as exc:
        print(f"clipwatch deploy: {exc}", file=sys.stderr)
        return 2
    print(f"{args.to} now serves {target.name} ({target}); `clipwatch serve --model {args.to}` "
          "follows it")
    return 0


def _retrain(args) -> int:
    import inference  # noqa: F401  -- sets MXNet's thread count before MXNet loads
    from clipwatch.errors import ClipwatchError, ModelUnavailable
    from clipwatch.store import open_store
    from inference.deployment import DeploymentError
    from training.datasets import DatasetError
    from training.retrain import RetrainRefused, retrain
    from training.train import TrainingError

    try:
        reader, settings = _reader(args)
        store = open_store(args.store or settings.store_url)
        given = {k: v for k, v in (("min_reviewed", args.min_reviewed),
                                   ("reviewed_weight", args.reviewed_weight)) if v is not None}
        report = retrain(Path(args.deployment), store, reader, Path(args.data), epochs=args.epochs,
                         routing=Path(args.routing) if args.routing else None, alpha=args.alpha,
                         delta=args.delta, **given)
    except (RetrainRefused, DeploymentError, DatasetError, TrainingError, ModelUnavailable) as exc:
        print(f"clipwatch retrain: {exc}; nothing changed", file=sys.stderr)
        return 2
    except ClipwatchError as exc:  # a reviewed segment that cannot be read
        print(f"clipwatch retrain: {exc.message}; nothing changed", file=sys.stderr)
        return 2
    gate = report["gate"]
    print(json.dumps({k: report[k] for k in ("serving_version", "candidate_version", "promoted",
                                              "reason", "reviewed")}
                     | {"held_out": gate["held_out"], "reviewed_clips": gate["reviewed"]}, indent=1))
    if not report["promoted"]:
        print(f"clipwatch retrain: {report['reason']} (figures in {report['candidate']}/evaluation)",
              file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    dep = sub.add_parser(
        "deploy", help="point a deployment (the folder endpoints follow) at a model directory",
        formatter_class=raw,
        description="Copy MODEL into DEPLOY/versions/<version> and point DEPLOY/current at it. "
                    "`clipwatch serve --model DEPLOY` and workers given --model DEPLOY switch to "
                    "it within seconds, without a restart; deploying an older version rolls back.",
        epilog="example:\n  clipwatch deploy models/demo --to deploy/\n"
               "  clipwatch deploy deploy/versions/i3d-tiny-synth-5 --to deploy/   # roll back")
    dep.add_argument("model", help="model directory to serve")
    dep.add_argument("--to", required=True, help="deployment folder (created if missing)")
    dep.set_defaults(run=_deploy)

    rt = sub.add_parser(
        "retrain", help="reviewed labels → fine-tune the serving model → gate → promote",
        formatter_class=raw,
        description="Export the reviewed and audited labels, train a candidate from the model "
                    "DEPLOY serves (its backbone frozen, its classifier trained on from where it "
                    "is, on --data's train split plus the reviewed clips), and promote it only if "
                    "it is at least as good on --data's test split (frozen, never trained on) and "
                    "better on reviewed clips held out from training. Exit 0: promoted; 1: the "
                    "gate said no; 2: nothing to do or bad input. The gate's figures: "
                    "DEPLOY/versions/<v>/evaluation once promoted, else "
                    "DEPLOY/candidates/<v>/model/evaluation.",
        epilog="example:\n  clipwatch retrain --deployment deploy/ --data data/synth "
               "--store sqlite:///preds.db --allow-dir /data/hls")
    rt.add_argument("--deployment", required=True, help="deployment folder (clipwatch deploy)")
    rt.add_argument("--data", required=True,
                    help="the model's dataset: train split replayed, val split calibrates, test "
                         "split is the frozen held-out set of the gate")
    _store_options(rt)
    # Defaults live in training.retrain (MIN_REVIEWED = 20, REVIEWED_WEIGHT = 5).
    rt.add_argument("--min-reviewed", type=int, help="reviewed clips needed before training (20)")
    rt.add_argument("--reviewed-weight", type=int,
                    help="times each reviewed training clip is repeated beside the replayed data (5)")
    rt.add_argument("--epochs", type=int, help="classifier epochs (default 100, early stopping on the val split)")
    rt.add_argument("--routing", metavar="STREAMS",
                    help="labelled streams to fit the candidate's review score on before it is "
                         "promoted (clipwatch evaluate --routing); without it the new model routes "
                         "by the fallback thresholds")
    rt.add_argument("--alpha", type=float, default=0.02, help="with --routing: target auto-accepted error")
    rt.add_argument("--delta", type=float, default=0.1, help="with --routing: 1 - confidence of the bound")
    rt.set_defaults(run=_retrain)
