"""How much reviewer effort the model's proposed segments save (review.effort's simulated
reviewer), on synthetic 10 s segments whose activities change at known frames.

Each segment shows 2–4 activities one after another (2–5 s each): in every other segment a new
object takes over in the same place, in the rest each activity comes with a cut to a new scene
(as a camera switch does); rendered and encoded to real H.264 TS. The endpoint's pre-segmentation (``inference.presegment``,
the model as `clipwatch serve` runs it) proposes segments; the simulated reviewer turns (a) an
empty timeline and (b) the proposals into the truth, counting edits, and the proposals'
boundary error is measured in frames.

    .venv/bin/python benchmarks/presegment_effort.py --clips 40
"""

from __future__ import annotations

import inference  # noqa: F401,I001  -- MXNet's thread count, before MXNet loads

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.table import Table

from harness import REPO, console, progress, save_results

DEMO_MODEL = REPO / "models" / "demo"


def random_parts(rng: np.random.Generator, activities: list[str], seconds: int = 10) -> list[tuple[str, float]]:
    """2–4 consecutive different activities, 2–5 s each, filling ``seconds``."""
    while True:
        k = int(rng.integers(2, 5))
        cuts = np.sort(rng.choice(np.arange(2, seconds - 1), k - 1, replace=False))
        lengths = np.diff([0, *cuts, seconds])
        if lengths.min() >= 2 and lengths.max() <= 5:
            break
    parts, previous = [], None
    for n in lengths:
        choice = [a for a in activities if a != previous]
        previous = choice[int(rng.integers(len(choice)))]
        parts.append((previous, float(n)))
    return parts


def measure(model_dir: Path, clips: int, seed: int, tolerance: int, min_windows: int) -> dict:
    from inference.model import load_classifier
    from inference.presegment import presegment
    from review.effort import Span, from_proposals, from_scratch
    from training.synth import write_activity_segment

    classifier = load_classifier(model_dir)
    spec, classes = classifier.card.input, classifier.classes
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="clipwatch-effort-") as d, progress() as bar:
        task = bar.add_task(f"{clips} segments: render, propose, review", total=clips)
        for i in range(clips):
            parts = random_parts(rng, classes)
            path = Path(d) / f"seg_{i:05d}.ts"
            cuts = i % 2 == 1  # every other clip changes scene at each change, as a camera switch does
            truth = write_activity_segment(path, parts, seed=seed * 1000 + i, size=(320, 180), cuts=cuts)
            started = time.perf_counter()
            ps = presegment(path.read_bytes(), classifier.infer, classes, spec, classifier.card.temperature,
                            min_windows=min_windows)
            ms = (time.perf_counter() - started) * 1000
            # what the page gives a new segment: the model's label for the whole clip
            cover: dict[str, float] = {}
            for w in ps.windows:
                cover[w.label] = cover.get(w.label, 0.0) + 1
            default = max(cover, key=cover.get)
            spans = [Span(t["start"], t["end"], t["label"]) for t in truth]
            proposed = [Span(p.start, p.end, p.label) for p in ps.proposals]
            duration = truth[-1]["end"]
            scratch = from_scratch(spans, default, duration, 30.0)
            assisted = from_proposals(spans, proposed, 30.0, duration, default, tolerance)
            rows.append({"cuts": cuts, "truth": truth, "proposals": [p.model_dump() for p in ps.proposals],
                         "scratch": scratch.as_dict(), "proposals_effort": assisted.as_dict(),
                         "boundary_error_frames": assisted.boundary_error_frames, "presegment_ms": round(ms, 1)})
            bar.advance(task)
    return summarize(rows, tolerance, min_windows, model_dir)


def summarize(rows: list[dict], tolerance: int, min_windows: int, model_dir: Path) -> dict:
    """Means per clip, overall and for each kind of change (one place; a cut to a new scene)."""
    keys = ("accepts", "drawn", "boundary_moves", "label_changes", "deleted", "edits")

    def figures(subset: list[dict]) -> dict:
        errors = [e for r in subset for e in r["boundary_error_frames"]]
        scratch = {k: round(statistics.fmean(r["scratch"][k] for r in subset), 3) for k in keys}
        assisted = {k: round(statistics.fmean(r["proposals_effort"][k] for r in subset), 3) for k in keys}
        return {"clips": len(subset), "true_segments": sum(len(r["truth"]) for r in subset),
                "per_clip": {"from_scratch": scratch, "from_proposals": assisted},
                "edits_saved": round(1 - assisted["edits"] / scratch["edits"], 3),
                "boundary_error_frames": {
                    "median": round(float(np.median(errors)), 2) if errors else None,
                    "mean": round(float(np.mean(errors)), 2) if errors else None,
                    "p90": round(float(np.percentile(errors, 90)), 2) if errors else None,
                    "within_tolerance": round(float(np.mean(np.asarray(errors) <= tolerance + 0.05)), 3) if errors else None,
                    "boundaries": len(errors)}}

    return {
        "model": str(model_dir.resolve().relative_to(REPO) if model_dir.resolve().is_relative_to(REPO) else model_dir),
        "tolerance_frames": tolerance, "min_windows": min_windows,
        **figures(rows),
        "by_change": {"same place": figures([r for r in rows if not r["cuts"]]),
                      "cut to a new scene": figures([r for r in rows if r["cuts"]])},
        "presegment_ms_median": round(statistics.median(r["presegment_ms"] for r in rows), 1),
        "rows": rows,
    }


def plot(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("drawn", "boundary_moves", "label_changes", "deleted", "accepts")
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(11, 4))
    bottom = np.zeros(2)
    for k in keys:
        values = np.array([result["per_clip"]["from_scratch"][k], result["per_clip"]["from_proposals"][k]])
        ax.bar(["from scratch", "from proposals"], values, bottom=bottom, label=k.replace("_", " "))
        bottom += values
    ax.set_ylabel("edits per 10 s clip")
    ax.set_title(f"reviewer edits, {result['clips']} clips ({result['edits_saved']:.0%} saved)")
    ax.legend(fontsize=8)
    errors = [e for r in result["rows"] for e in r["boundary_error_frames"]]
    hist.hist(errors, bins=np.arange(0, max(errors + [10]) + 2) - 0.5)
    hist.axvline(result["tolerance_frames"] + 0.5, color="k", ls="--", lw=1, label="tolerance")
    hist.set_xlabel("proposed boundary error (frames at 30 fps)")
    hist.set_ylabel("boundaries")
    hist.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEMO_MODEL)
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--seed", type=int, default=20261201)
    ap.add_argument("--tolerance", type=int, default=2, help="boundary error (frames) a reviewer leaves alone")
    ap.add_argument("--min-windows", type=int, default=None, help="pre-segmentation's blip length (default: its own)")
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "benchmarks" / "presegment_effort.json")
    args = ap.parse_args(argv)
    from inference.presegment import MIN_WINDOWS

    result = measure(args.model, args.clips, args.seed, args.tolerance, args.min_windows or MIN_WINDOWS)
    table = Table(title=f"reviewer edits per 10 s clip ({result['clips']} clips, tolerance "
                        f"{args.tolerance} frames)")
    for col in ("change", "clips", "from scratch", "from proposals", "saved", "boundary error (frames): median",
                "p90", "within tolerance"):
        table.add_column(col)
    for name, f in [("all", result), *result["by_change"].items()]:
        b = f["boundary_error_frames"]
        table.add_row(name, str(f["clips"]), f"{f['per_clip']['from_scratch']['edits']:.2f}",
                      f"{f['per_clip']['from_proposals']['edits']:.2f}", f"{f['edits_saved']:.0%}",
                      str(b["median"]), str(b["p90"]), f"{b['within_tolerance']:.0%}")
    console.print(table)
    console.print(f"pre-segmentation: {result['presegment_ms_median']} ms per segment (median)")
    save_results(result, args.out, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
