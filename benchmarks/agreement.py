"""Do the fast paths change predictions? Top-1 agreement between the served path and the fp32
GluonCV/MXNet reference path, on held-out synthetic clips for the demo model, and on real
footage for DeepMind's Kinetics-400 I3D (``measure_real_agreement``).

- Reference: GluonCV's own ``VideoClsCustom`` loader (decord, its validation sampling,
  ``VideoGroupValTransform``) feeding the model directory's MXNet graph in fp32.
- Served: ``Endpoint.invoke`` on each clip's file, with the runtime/precision/decoder under test (by
  default the one `clipwatch serve` picks), keyframe snapping as served, and with it off.

The clips are regenerated deterministically with ``training.synth.make_dataset`` under a seed
the demo model was not trained on (it was trained on seed 1): every clip is held out.

    .venv/bin/python benchmarks/agreement.py --model models/demo
"""

from __future__ import annotations

import inference  # noqa: F401,I001  -- MXNet's thread count, before MXNet loads
import mxnet  # noqa: F401,I001  -- before decord

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from harness import console, progress

DEFAULT_SEED = 20261122
DEMO_MODEL = Path(__file__).resolve().parent.parent / "models" / "demo"


def render_clips(out: Path, clips_per_class: int, seed: int) -> Path:
    from training.synth import make_dataset

    with console.status(f"rendering {clips_per_class} held-out synthetic clips per class (seed {seed})"):
        make_dataset(out, clips_per_class, seed=seed, progress=False)
    # All three list files: nothing in this seed was seen in training.
    (out / "all.txt").write_text("".join((out / f"{s}.txt").read_text()
                                         for s in ("train", "val", "test")))
    return out


def reference_predictions(data: Path, model_dir: Path) -> tuple[list[int], list[int]]:
    """Top-1 of the fp32 GluonCV/MXNet path, and the true labels (``data/all.txt``)."""
    from clipwatch.footage import probe
    from inference.decode import scaled_size
    from inference.gluoncv_compat import import_gluoncv
    from inference.model import load_classifier

    import_gluoncv()
    from gluoncv.data import VideoClsCustom
    from gluoncv.data.transforms.video import VideoGroupValTransform

    classifier = load_classifier(model_dir, runtime="mxnet")
    s = classifier.card.input
    # GluonCV's loader takes a width and height; a short-side resize needs the clips' size
    clip = probe(data / (data / "all.txt").read_text().split()[0])
    width, height = scaled_size(clip["width"], clip["height"], s.resize)
    dataset = VideoClsCustom(
        root=str(data), setting=str(data / "all.txt"), train=False, new_length=s.frames,
        new_step=s.stride, new_width=width, new_height=height, target_width=s.crop,
        target_height=s.crop, video_loader=True, use_decord=True,
        transform=VideoGroupValTransform(size=s.crop, mean=s.mean, std=s.std))
    top1, labels = [], []
    with progress() as bar:
        task = bar.add_task("reference: GluonCV loader + MXNet fp32", total=len(dataset))
        for i in range(len(dataset)):
            clip, label = dataset[i]
            top1.append(int(classifier.logits(clip.asnumpy()).argmax()))
            labels.append(int(label))
            bar.advance(task)
    return top1, labels


def served_predictions(data: Path, model_dir: Path, runtime: str, precision: str,
                       snap_to_keyframe: bool, decoder: str = "pyav",
                       learn_from: Path | None = None) -> tuple[list[int], str]:
    """``learn_from``: clips served first, as a live endpoint would, so the model learns int8
    from them (``inference.auto_int8``); the held-out clips are then served on what it settled on."""
    from clipwatch.blobs import SegmentReader
    from clipwatch.config import AutoInt8Settings
    from clipwatch.records import InvocationRequest
    from inference.model import load_classifier
    from inference.predictor import Endpoint

    classifier = load_classifier(model_dir, runtime=runtime, precision=precision)
    endpoint = Endpoint(classifier, SegmentReader(allowed_dirs=tuple(d for d in (data, learn_from) if d)), None,
                        snap_to_keyframe=snap_to_keyframe, decoder=decoder,
                        auto_int8=AutoInt8Settings() if learn_from is not None else None)
    paths = [data / line.split()[0] for line in (data / "all.txt").read_text().splitlines()]
    top1 = []
    try:
        if learn_from is not None:
            learn_precision(endpoint, [learn_from / line.split()[0]
                                       for line in (learn_from / "all.txt").read_text().splitlines()])
        with progress() as bar:
            task = bar.add_task(f"served: {classifier.backend}, {decoder}, keyframe snap "
                                f"{'on' if snap_to_keyframe else 'off'}", total=len(paths))
            for path in paths:
                p = endpoint.invoke(InvocationRequest(uri=str(path)))
                top1.append(classifier.classes.index(p.label))
                bar.advance(task)
    finally:
        endpoint.close()
    return top1, classifier.backend


def learn_precision(endpoint, paths: list[Path]) -> None:
    """Serve ``paths`` in turn until the endpoint's int8 learning settled (or they run out)."""
    from clipwatch.records import InvocationRequest

    with progress() as bar:
        task = bar.add_task("serving until int8 is learnt and checked (or refused)", total=len(paths))
        for path in paths:
            if not endpoint.active.int8.learning:
                break
            endpoint.invoke(InvocationRequest(uri=str(path)))
            bar.advance(task)
    console.print(f"precision: {endpoint.active.precision['reason']}")


def measure_agreement(workdir: Path, model_dir: Path = DEMO_MODEL, clips_per_class: int = 30,
                      seed: int = DEFAULT_SEED, runtime: str = "auto",
                      precision: str = "auto", decoder: str = "pyav", learn_int8: bool = False) -> dict:
    """``learn_int8``: the served model first learns int8 while serving clips of another seed
    (the default serving path); else it serves as loaded."""
    data = render_clips(workdir / "agreement-clips", clips_per_class, seed)
    learn_from = render_clips(workdir / "learning-clips", 20, seed + 1) if learn_int8 else None
    reference, labels = reference_predictions(data, model_dir)
    result = {"model": str(model_dir), "clips": len(labels), "seed": seed,
              "reference": "GluonCV VideoClsCustom + VideoGroupValTransform + MXNet fp32",
              "reference_accuracy": round(float(np.mean(np.equal(reference, labels))), 4)}
    for snap in (True, False):
        served, backend = served_predictions(data, model_dir, runtime, precision, snap, decoder, learn_from)
        key = "served" if snap else "served_no_keyframe_snap"
        result[key] = {
            "backend": backend, "decoder": decoder, "keyframe_snap": snap,
            "agreement": round(float(np.mean(np.equal(served, reference))), 4),
            "disagreements": int(np.sum(np.not_equal(served, reference))),
            "accuracy": round(float(np.mean(np.equal(served, labels))), 4)}
    from inference.model import load_classifier

    result["model_version"] = load_classifier(model_dir, runtime="mxnet").card.version
    return result


def measure_real_agreement(segments: Path, model_dir: Path, runtime: str = "auto",
                           precision: str = "auto", decoder: str = "pyav", windows: int = 4,
                           learnt_int8: bool = False) -> dict:
    """For DeepMind's Kinetics I3D on real footage: top-1 of the served network (runtime and
    precision as served) against the MXNet fp32 graph, on the same frames — ``windows`` clips of
    every real clip (clipwatch.footage) at 720p, decoded by the endpoint's decoder.

    Not GluonCV's loader here: on footage whose label moves with the window, its other frames
    (decord reads HLS ``.ts`` 60 frames off, README "Decoding") would measure sampling, not
    precision; the fidelity test checks the graph itself against DeepMind's."""
    from clipwatch import footage
    from inference.decode import decode_clips
    from inference.model import load_classifier
    from inference.preprocess import center_crop_clips, normalize_clips

    served = load_classifier(model_dir, runtime=runtime, precision=precision)
    if learnt_int8:  # what the benchmark's endpoint learnt and switched to while serving
        from inference.auto_int8 import use_learnt

        use_learnt(served)
    reference = load_classifier(model_dir, runtime="mxnet")
    s = reference.card.input
    same, judged, right = [], [], []
    with progress() as bar:
        task = bar.add_task(f"agreement on real footage: {served.backend} vs mxnet-fp32",
                            total=len(footage.CLIPS) * windows)
        for name, clip in footage.CLIPS.items():
            path = footage.segment(name, segments.parent / "agreement-real" / f"{name}.ts", size=(1280, 720))
            decoded = decode_clips(path.read_bytes(), s.sampler(windows, False),
                                   s.resize, decoder=decoder)
            batch = normalize_clips(center_crop_clips(decoded.frames, s.crop), s.crop, s.mean, s.std)
            for x in batch:
                ours = int(served.logits(x[None]).argmax())
                ref = int(reference.logits(x[None]).argmax())
                same.append(ours == ref)
                if clip.kinetics:
                    judged.append(served.classes[ours] in clip.kinetics)
                    right.append(served.classes[ref] in clip.kinetics)
                bar.advance(task)
    return {"model": str(model_dir), "model_version": reference.card.version,
            "clips": len(same), "footage": list(footage.CLIPS), "windows": windows,
            "reference": "the model directory's MXNet graph, fp32, on the same frames",
            "reference_accuracy": round(float(np.mean(right)), 4),
            "served": {"backend": served.backend, "decoder": decoder,
                       "agreement": round(float(np.mean(same)), 4),
                       "disagreements": int(len(same) - sum(same)),
                       "accuracy": round(float(np.mean(judged)), 4)}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Top-1 agreement of the served path with the fp32 "
                                            "GluonCV/MXNet reference on held-out synthetic clips.")
    p.add_argument("--model", type=Path, default=DEMO_MODEL)
    p.add_argument("--clips-per-class", type=int, default=30)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--runtime", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--decoder", default="pyav", choices=("pyav", "decord"))
    p.add_argument("--learn-int8", action="store_true",
                   help="serve 140 clips of another seed first, so the model learns int8 as a "
                        "live endpoint does (inference.auto_int8), then measure what it settled on")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clipwatch-agreement-") as tmp:
        result = measure_agreement(Path(tmp), args.model, args.clips_per_class, args.seed,
                                   args.runtime, args.precision, args.decoder, args.learn_int8)
    console.print_json(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
