"""What a pretrained backbone buys: DeepMind's Kinetics-400 I3D with a new classifier (backbone
frozen, ``clipwatch train --base kinetics400``) against ``i3d_tiny`` trained from scratch (the
demo model's recipe), each trained on 10, 50 and 250 clips a class of one synthetic dataset and
scored on that dataset's held-out test split, the same clips for every model.

Subsets keep the dataset's 70/15/15 proportions (10 a class: 7 train, 2 validation) and take
each class's first clips, so a smaller set is contained in the larger one; the test split is
always the full one. At 250 a class the from-scratch model is the committed demo model
(``models/demo``: the same dataset and recipe, trained in an earlier session), evaluated here.

    python -m training.transfer_study --data .cache/synth-demo --out docs/transfer

writes ``transfer.json`` and ``transfer.png`` (test top-1 against clips a class) into ``--out``
and the models into ``--work`` (default ``.cache/transfer``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from .datasets import load_split, read_classes
from .evaluate import evaluate
from .train import make_config, train

SIZES = (10, 50, 250)
DEMO_MODEL = Path(__file__).resolve().parents[1] / "models" / "demo"
TINY_RECIPE = {"base": "i3d_tiny", "epochs": 40, "patience": 12, "seed": 6}
K400_RECIPE = {"base": "kinetics400", "seed": 6}  # the frozen-head defaults (training.train)


def subset(data: Path, out: Path, per_class: int) -> Path:
    """List files of the first ``per_class`` clips a class (70/15/15), the full test split."""
    classes = read_classes(data)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(data / "classes.txt", out / "classes.txt")
    if (data / "flip.json").is_file():
        shutil.copy(data / "flip.json", out / "flip.json")
    counts = {"train": max(1, round(0.7 * per_class)), "val": max(1, round(0.15 * per_class))}
    for split in ("train", "val", "test"):
        _, records = load_split(data, split)
        keep, seen = [], {c: 0 for c in range(len(classes))}
        for r in records:
            if split == "test" or seen[r.label] < counts[split]:
                keep.append(f"{r.path.resolve()} {r.num_frames} {r.label}")
                seen[r.label] += 1
        (out / f"{split}.txt").write_text("\n".join(keep) + "\n")
    return out


def run(data: Path, out: Path, work: Path, sizes=SIZES) -> dict:
    rows = []
    for n in sizes:
        folder = subset(data, work / f"data-{n}", n)
        for name, recipe in (("kinetics400 I3D, new classifier (frozen backbone)", K400_RECIPE),
                             ("i3d_tiny from scratch", TINY_RECIPE)):
            model = work / f"{recipe['base']}-{n}"
            started = time.monotonic()
            reused = recipe["base"] == "i3d_tiny" and n == 250 and DEMO_MODEL.is_dir()
            if reused:
                model = DEMO_MODEL
            else:
                train(make_config(folder, model, dict(recipe)))
            train_s = time.monotonic() - started
            result = evaluate(model, folder, "test", out=work / f"eval-{recipe['base']}-{n}",
                              calibrate=not reused)
            rows.append({"model": name, "base": recipe["base"], "clips_per_class": n,
                         "train_clips": len(load_split(folder, "train")[1]),
                         "test_clips": result["clips"], "test_top1": result["top1"],
                         "test_top5": result["top5"], "ece": result["ece_after"],
                         "train_s": None if reused else round(train_s, 1),
                         "note": "models/demo (same dataset and recipe)" if reused else ""})
            print(json.dumps(rows[-1]))
    from .train import FROZEN_HEAD_DEFAULTS

    report = {"data": str(data), "recipes": {"kinetics400": {**K400_RECIPE, **FROZEN_HEAD_DEFAULTS},
                                             "i3d_tiny": TINY_RECIPE},
              "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(rows, out / "transfer.png")
    return report


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for base, style in (("kinetics400", "o-"), ("i3d_tiny", "s--")):
        mine = sorted((r["clips_per_class"], r["test_top1"]) for r in rows if r["base"] == base)
        if mine:
            ax.plot(*zip(*mine), style, label=next(r["model"] for r in rows if r["base"] == base))
    ax.set_xscale("log")
    ax.set_xticks([r["clips_per_class"] for r in rows], [str(r["clips_per_class"]) for r in rows])
    ax.set_xlabel("synthetic clips per class (70% of them train)")
    ax.set_ylabel(f"test top-1 ({rows[0]['test_clips']} held-out clips)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Transfer learning vs training from scratch")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  python -m training.transfer_study --data "
                                       ".cache/synth-demo --out docs/transfer")
    p.add_argument("--data", type=Path, required=True, help="synthetic dataset (clipwatch synth)")
    p.add_argument("--out", type=Path, required=True, help="where transfer.json/.png go")
    p.add_argument("--work", type=Path, default=Path(".cache/transfer"), help="models and subsets")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="clips a class (10,50,250)")
    args = p.parse_args(argv)
    run(args.data, args.out, args.work, [int(n) for n in args.sizes.split(",")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
