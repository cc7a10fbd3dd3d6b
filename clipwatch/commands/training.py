"""`clipwatch synth | train | evaluate | quantize`: synthetic data, fine-tuning, calibrated
evaluation, int8 calibration."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _synth(args) -> int:
    import json

    from training.synth import HFLIP, make_dataset, write_live_stream

    out = Path(args.out)
    w, h = (int(v) for v in (args.size or ("640x360" if args.live else "256x144")).lower().split("x"))
    if args.live and args.streams:
        return _synth_streams(args, out, (w, h))
    if args.live:
        playlist = write_live_stream(out, args.segments, seed=args.seed, size=(w, h),
                                     realtime=args.realtime, run_kinds=_run_kinds(args))
        print(f"live stream: {playlist} (ground truth: {out / 'ground_truth.jsonl'})")
        return 0
    summary = make_dataset(out, args.clips_per_class, seed=args.seed, size=(w, h), seconds=args.seconds)
    (out / "flip.json").write_text(json.dumps(HFLIP, indent=1) + "\n")  # for training augmentation
    print(json.dumps(summary, indent=1))
    return 0


def _synth_streams(args, out: Path, size: tuple[int, int]) -> int:
    """Several live streams kept whole (every segment, no sliding window), with their ground
    truth: labelled segments as the endpoint meets them, for ``clipwatch evaluate --routing``.
    Stream ``i`` has seed ``--seed + i``; a stream already complete is kept (a second run resumes)."""
    from rich.progress import Progress

    from training.synth import write_live_stream

    with Progress() as bar:
        task = bar.add_task(f"{args.streams} live streams × {args.segments} segments", total=args.streams)
        for i in range(args.streams):
            folder = out / f"stream_{args.seed + i:05d}"
            truth = folder / "ground_truth.jsonl"
            if not (truth.is_file() and len(truth.read_text().splitlines()) == args.segments):
                write_live_stream(folder, args.segments, seed=args.seed + i, size=size, list_size=0,
                                  progress=False, run_kinds=_run_kinds(args))
            bar.advance(task)
    print(f"{args.streams} streams in {out} (seeds {args.seed}–{args.seed + args.streams - 1})")
    return 0


HARD_RUNS = {"tiny": "tiny object", "fast": "fast object", "two": "two activities"}


def _run_kinds(args):
    """The live schedule's kinds of run: the usual mix, or one hard kind throughout (--hard)."""
    from training.synth import RUN_KINDS

    return ((HARD_RUNS[args.hard], 1.0),) if args.hard else RUN_KINDS


def _train(args) -> int:
    import inference  # noqa: F401  -- sets MXNet's thread count before MXNet loads
    from clipwatch.errors import ModelUnavailable
    from training.datasets import DatasetError
    from training.train import TrainingError, make_config, train

    try:
        cfg = make_config(args.data, args.out, vars(args), resume=args.resume,
                          validation=Path(args.validation) if args.validation else None)
        out = train(cfg)
    except (DatasetError, TrainingError, ModelUnavailable) as exc:
        print(f"clipwatch train: {exc}", file=sys.stderr)
        return 2
    print(f"model directory: {out} (and {out / 'model.tar.gz'})")
    return 0


def _evaluate(args) -> int:
    import json

    import inference  # noqa: F401
    from clipwatch.errors import ModelUnavailable
    from training.datasets import DatasetError
    from training.evaluate import evaluate
    from training.routing import RoutingDataError

    if not args.data and not args.routing:
        print("clipwatch evaluate: give --data (held-out clips) and/or --routing (labelled streams)",
              file=sys.stderr)
        return 2
    try:
        if args.data:
            result = evaluate(Path(args.model), Path(args.data), split=args.split,
                              out=Path(args.out) if args.out else None, calibrate=not args.no_calibrate)
            print(json.dumps({k: result[k] for k in (
                "model_version", "split", "clips", "top1", "top5", "temperature", "ece_before",
                "ece_after", "skipped_clips", "reference_bank")}, indent=1))
        if args.routing:
            _evaluate_routing(args)
    except (DatasetError, ModelUnavailable, RoutingDataError) as exc:
        print(f"clipwatch evaluate: {exc}", file=sys.stderr)
        return 2
    return 0


def _evaluate_routing(args) -> None:
    import json

    from rich.progress import Progress

    from training.evaluate import evaluate_routing

    with Progress(transient=True) as progress:
        report = evaluate_routing(Path(args.model), Path(args.routing),
                                  Path(args.out) if args.out else None, args.alpha, args.delta, progress)
    point, test = report["operating_point"], report["test"]
    print(json.dumps({"model_version": report["model_version"], "segments": report["segments"],
                      "model_accuracy": report["model_accuracy"], "operating_point": point,
                      "test": test, "aurc": {k: round(v["aurc"], 4) for k, v in report["risk_coverage"].items()},
                      "aurc_without": report["aurc_without"], "skipped_segments": report["skipped_segments"]},
                     indent=1))
    if point["threshold"] < 0:
        print(f"clipwatch evaluate: no threshold certifies an auto-accepted error <= {args.alpha:.1%} at "
              f"{1 - args.delta:.0%} confidence on these {point['n']} calibration segments: "
              "everything goes to review (more labelled streams, or a larger --alpha)", file=sys.stderr)


def _quantize(args) -> int:
    import json

    from rich.console import Console

    import inference  # noqa: F401
    from clipwatch.errors import ModelUnavailable
    from training.datasets import DatasetError
    from training.int8 import calibrate_int8

    try:
        with Console(stderr=True).status(f"calibrating int8 on {args.clips} clips of "
                                         f"{args.calibration_split}, checking on {args.check_split}"):
            result = calibrate_int8(Path(args.model), Path(args.data), args.calibration_split,
                                    args.check_split, args.clips, force=args.force)
    except (DatasetError, ModelUnavailable, ValueError) as exc:
        print(f"clipwatch quantize: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    if not result["saved"]:
        print(f"clipwatch quantize: int8 agreed with fp32 on {result['int8']['agreement']:.1%} of "
              f"{result['int8']['checked_clips']} clips, under the 99% the endpoint needs; not "
              "saved (--force saves it anyway; serve it with --precision int8)", file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    synth = sub.add_parser(
        "synth", help="render synthetic activity clips (a dataset) or a live HLS stream",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  clipwatch synth --out data/synth --clips-per-class 100\n"
               "  clipwatch synth --live --out /tmp/live --segments 12 --realtime")
    synth.add_argument("--out", required=True)
    synth.add_argument("--clips-per-class", type=int, default=40)
    synth.add_argument("--seconds", type=float, default=2.0, help="clip length (dataset mode)")
    synth.add_argument("--size", default=None, help="WxH (default 256x144; 640x360 live)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--live", action="store_true", help="write an HLS live stream instead")
    synth.add_argument("--segments", type=int, default=12, help="live mode: 10 s segments to write")
    synth.add_argument("--realtime", action="store_true", help="live mode: pace like a real encoder")
    synth.add_argument("--streams", type=int, default=0,
                       help="live mode: write this many whole streams (stream_<seed>/, every segment "
                            "kept), seeds --seed, --seed+1, …: labelled data for evaluate --routing")
    synth.add_argument("--hard", choices=sorted(HARD_RUNS),
                       help="live mode: every run a hard case — tiny objects, fast ones, or two "
                            "activities at once (default: a mix, 30%% of runs hard)")
    synth.set_defaults(run=_synth)

    tr = sub.add_parser(
        "train", help="fine-tune an I3D on a dataset (list files or class folders)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  clipwatch train --data data/synth --out models/demo --epochs 30\n"
               "  clipwatch train --data ucf101/ --base i3d_resnet50_v1_kinetics400 --optimizer sgd "
               "--lr 0.01 --freeze-epochs 2 --feature-lr-mult 0.1 --out models/ucf\n"
               "  clipwatch train --data data/synth --base kinetics400 --out models/k400-synth"
               "   # DeepMind's I3D, new classifier")
    tr.add_argument("--data", required=True, help="dataset folder (train.txt/val.txt + classes.txt, or class folders)")
    tr.add_argument("--out", required=True, help="model directory to write")
    # Defaults live in training.train.TrainConfig (i3d_tiny, 12 epochs, batch 16, adam 2e-3, …).
    tr.add_argument("--base", help="i3d_tiny (default), kinetics400 (DeepMind's I3D, fetched by "
                                   "`clipwatch model fetch kinetics400`; its backbone stays frozen "
                                   "unless --freeze-epochs says otherwise), a model directory, or a "
                                   "GluonCV model-zoo name")
    tr.add_argument("--validation", help="validation dataset folder (default: --data's val split)")
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--optimizer", choices=["adam", "sgd"])
    tr.add_argument("--lr", type=float)
    tr.add_argument("--freeze-epochs", type=int, help="epochs training only the new classifier")
    tr.add_argument("--feature-lr-mult", type=float, help="learning-rate factor for pretrained features")
    tr.add_argument("--patience", type=int, help="early stopping: epochs without a better val top-1")
    tr.add_argument("--seed", type=int)
    tr.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    tr.add_argument("--version", help="model version (default: OUT's name and best epoch)")
    tr.set_defaults(run=_train)

    ev = sub.add_parser(
        "evaluate", help="score a model on held-out clips and calibrate its confidence",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  clipwatch evaluate --model models/demo --data data/synth\n"
               "  clipwatch evaluate --model models/demo --routing data/streams --alpha 0.02")
    ev.add_argument("--model", required=True)
    ev.add_argument("--data", help="a clip dataset: held-out accuracy, calibration, reference bank")
    ev.add_argument("--routing", metavar="STREAMS",
                    help="labelled live streams (clipwatch synth --live --streams): fit the review "
                         "score and the operating point that bounds the auto-accepted error")
    ev.add_argument("--alpha", type=float, default=0.02, help="target auto-accepted error (routing)")
    ev.add_argument("--delta", type=float, default=0.1,
                    help="the bound holds with probability 1 - delta (routing)")
    ev.add_argument("--split", default="test")
    ev.add_argument("--out", help="where evaluation.json and the PNGs go (default MODEL/evaluation)")
    ev.add_argument("--no-calibrate", action="store_true", help="keep the model's temperature")
    ev.set_defaults(run=_evaluate)

    q = sub.add_parser(
        "quantize", help="calibrate an int8 module for a model directory and check it against fp32",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Observe the network on clips of a dataset, convert it to int8 (oneDNN: "
                    "VNNI/AMX-INT8), compare its top-1 with fp32 on another split, and save "
                    "model-int8.pt when they agree on >= 99%% of clips; `clipwatch serve` then "
                    "runs it by default on CPUs with int8 dot products.",
        epilog="example:\n  clipwatch quantize --model models/demo --data data/synth")
    q.add_argument("--model", required=True)
    q.add_argument("--data", required=True, help="dataset folder (list files + classes.txt)")
    q.add_argument("--calibration-split", default="train")
    q.add_argument("--check-split", default="val")
    q.add_argument("--clips", type=int, default=64, help="calibration clips, spread over classes (64)")
    q.add_argument("--force", action="store_true", help="save even under 99%% agreement")
    q.set_defaults(run=_quantize)
