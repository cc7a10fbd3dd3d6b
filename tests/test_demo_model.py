"""The committed demo model (`models/demo`) still recognises the synthetic activities it was
trained for, served as `make demo` serves it, on clips rendered now under a seed it never saw
(it was trained on seed 5): a checkout whose model, renderer or serving path drifted apart
fails here rather than in the demo's table."""

from __future__ import annotations

from pathlib import Path

from clipwatch.blobs import SegmentReader
from clipwatch.records import InvocationRequest
from inference.model import load_classifier
from inference.predictor import Endpoint
from training.synth import ACTIVITIES, make_dataset

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT_SEED = 20261201
CLIPS_PER_CLASS = 15  # 105 clips: one class wholly wrong would cost 0.14


def test_the_demo_model_scores_at_least_0_9_on_freshly_rendered_clips(tmp_path):
    data = tmp_path / "fresh"
    make_dataset(data, CLIPS_PER_CLASS, seed=HELD_OUT_SEED, progress=False)
    classifier = load_classifier(ROOT / "models" / "demo")  # the default serving path (int8 or bf16)
    assert classifier.classes == list(ACTIVITIES)
    endpoint = Endpoint(classifier, SegmentReader(allowed_dirs=(data,)), None)
    truth = [(data / path, int(label)) for split in ("train", "val", "test")
             for path, _, label in (line.split() for line in (data / f"{split}.txt").read_text().splitlines())]
    try:
        right = [classifier.classes.index(endpoint.invoke(InvocationRequest(uri=str(path))).label) == label
                 for path, label in truth]
    finally:
        endpoint.close()
    assert len(right) == CLIPS_PER_CLASS * len(ACTIVITIES)
    per_class = {ACTIVITIES[c]: sum(r for r, (_, l) in zip(right, truth) if l == c) / CLIPS_PER_CLASS
                 for c in range(len(ACTIVITIES))}
    accuracy = sum(right) / len(right)
    print(f"demo model: top-1 {accuracy:.3f} on {len(right)} fresh clips; per class {per_class}")
    assert accuracy >= 0.9, f"top-1 {accuracy:.3f} on {len(right)} fresh clips; per class {per_class}"
    assert min(per_class.values()) >= 0.6, per_class  # no class forgotten
