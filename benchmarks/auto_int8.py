"""How int8 learnt while serving (``inference.auto_int8``) goes for one model: distinct clips are
served one at a time through the same ``AutoInt8`` the endpoint puts in front of its model
(no HTTP, no decoding in the loop: the clips are decoded and normalized first, as served), until
it switched or refused; then clips it never saw are run through both precisions.

Reported: the outcome and why, clips and seconds to settle, the check's agreement and speed
ratio, and the top-1 agreement of what it serves afterwards with the safe precision on the
held-out clips. Models: DeepMind's Kinetics-400 I3D on real footage (``clipwatch.footage``,
many windows of each clip; its ``tie_margin`` rechecks close calls in fp32), or the demo model on
synthetic activity segments.

    .venv/bin/python benchmarks/auto_int8.py --model kinetics400 --out benchmarks/results/auto_int8-kinetics400.json
    .venv/bin/python benchmarks/auto_int8.py --model demo --out benchmarks/results/auto_int8-demo.json
"""

from __future__ import annotations

import inference  # noqa: F401,I001  -- MXNet's thread count, before MXNet loads

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import console, progress

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


def clips_for(model: str, classifier, work: Path, windows: int) -> np.ndarray:
    """(N, 3, T, H, W) float32 clips, normalized as served."""
    from clipwatch import footage
    from inference.decode import decode_clips
    from inference.preprocess import center_crop_clips, normalize_clips

    s = classifier.card.input
    if model == "kinetics400":
        paths = [footage.segment(name, work / f"{name}.ts", size=(1280, 720)) for name in footage.CLIPS]
    else:
        from training.synth import write_activity_segment

        kinds = classifier.classes

        paths = []
        for i in range(42):
            path = work / f"synth_{i:03d}.ts"
            write_activity_segment(path, [(kinds[i % len(kinds)], 6.0)], seed=500 + i, size=(640, 360))
            paths.append(path)
    out = []
    with progress() as bar:
        task = bar.add_task("decoding clips", total=len(paths))
        for path in paths:
            decoded = decode_clips(path.read_bytes(), s.sampler(windows, False), s.resize)
            out.append(normalize_clips(center_crop_clips(decoded.frames, s.crop), s.crop, s.mean, s.std))
            bar.advance(task)
    clips = np.concatenate(out)
    return clips[np.random.default_rng(0).permutation(len(clips))]  # footage interleaved


def main(argv=None) -> int:
    from clipwatch.config import AutoInt8Settings
    from inference.auto_int8 import AutoInt8, Int8Cache
    from inference.model import load_classifier
    from inference.quantize import cpu_has_int8_dot_product

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("kinetics400", "demo"), default="demo")
    p.add_argument("--windows", type=int, default=None, help="clips per segment (kinetics400 24, demo 4)")
    p.add_argument("--held-out", type=int, default=40, help="clips kept for after the switch (40)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    windows = args.windows or (24 if args.model == "kinetics400" else 4)
    out = args.out or Path(__file__).resolve().parents[1] / ".cache" / "benchmarks" / f"auto_int8-{args.model}.json"
    classifier = load_classifier("kinetics400" if args.model == "kinetics400" else DEMO)
    safe = classifier.backend
    with tempfile.TemporaryDirectory(prefix="clipwatch-auto-int8-") as tmp:
        clips = clips_for(args.model, classifier, Path(tmp), windows)
        served, held_out = clips[:-args.held_out], clips[-args.held_out:]
        reference = np.concatenate([classifier.infer(x[None])[0] for x in held_out])
        auto = AutoInt8(classifier, AutoInt8Settings(), Int8Cache(Path(tmp) / "int8"))
        started, n = time.perf_counter(), 0
        with progress() as bar:
            task = bar.add_task(f"serving distinct clips while it learns ({safe})", total=len(served))
            while auto.learning and n < len(served):
                auto.infer(served[n][None])
                n += 1
                bar.advance(task)
                time.sleep(0.01)  # the learner takes its clip, as between live requests
        while auto.learning and time.perf_counter() - started < 3600:
            time.sleep(0.5)  # the clips ran out: the outcome of what it got
        settled_s = time.perf_counter() - started
        after = np.concatenate([classifier.infer(x[None])[0] for x in held_out])
        auto.close()
    agreement = float(np.mean(after.argmax(1) == reference.argmax(1)))
    result = {"benchmark": "auto_int8", "model": classifier.card.version, "safe": safe,
              "outcome": auto.state, "reason": auto.reason, "clips_served": n,
              "seconds_to_settle": round(settled_s, 1), "serving_after": classifier.backend,
              "held_out_clips": len(held_out), "held_out_agreement_with_safe": round(agreement, 4),
              "cpu_int8_dot_product": cpu_has_int8_dot_product(),
              "loadavg": list(os.getloadavg()), "command": shlex.join([".venv/bin/python", "benchmarks/auto_int8.py",
                                     *(sys.argv[1:] if argv is None else argv)])}
    console.print_json(json.dumps(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
