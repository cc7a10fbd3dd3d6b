"""Evaluate a model directory on held-out clips, and calibrate it.

The temperature is fitted on the validation split (never the test split it is scored on) and
written into the model's ``model.json``, so the endpoint's confidence — which decides what goes
to human review — is calibrated. Outputs beside each other: ``evaluation.json``,
``confusion.png`` and ``reliability.png`` (before/after temperature scaling). The training
split's embeddings become the model's reference bank (``reference.npz``), which the endpoint's
novelty signal measures against (``inference.signals``).

``evaluate_routing`` (``--routing STREAMS``) fits the review score and its operating point on
labelled live streams (``training.routing``) and writes them into ``model.json`` too, with
``routing.json`` and ``routing.png`` (risk–coverage curves) beside the other figures.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from inference.model import ModelCard, load_classifier
from inference.model_archive import write_model_archive
from inference.scoring import softmax
from inference.signals import ReferenceBank

from .calibration import ece, fit_temperature, reliability
from .datasets import ClipDataset, DatasetError, dataset_logits, load_split
from .features import clip_features
from .metrics import summarize
from .plots import plot_confusion, plot_reliability, plot_risk_coverage
from .routing import collect, find_streams, fit_routing


def evaluate(model_dir: Path, data: Path, split: str = "test", calibration_split: str = "val",
             out: Path | None = None, batch_size: int = 16, calibrate: bool = True) -> dict:
    model_dir = Path(model_dir)
    out = Path(out) if out else model_dir / "evaluation"
    classifier = load_classifier(model_dir)
    skipped: dict[str, str] = {}

    def logits_of(split_name: str):
        dataset = _split_for(classifier, Path(data), split_name)
        with ThreadPoolExecutor(2) as pool:
            return dataset_logits(classifier.logits, dataset, pool, batch_size, skipped)

    temperature = classifier.card.temperature
    if calibrate:
        temperature = fit_temperature(*logits_of(calibration_split))
    logits, labels = logits_of(split)
    before = summarize(logits, labels, classifier.classes, 1.0)
    after = summarize(logits, labels, classifier.classes, temperature)
    bins_before = reliability(softmax(logits), labels)
    bins_after = reliability(softmax(logits, temperature), labels)
    result = {
        "model": str(model_dir), "model_version": classifier.card.version, "data": str(data),
        "split": split, "calibrated_on": calibration_split if calibrate else None,
        "temperature": temperature, "ece_before": ece(softmax(logits), labels),
        "ece_after": ece(softmax(logits, temperature), labels),
        "nll_before": before["nll"], "nll_after": after["nll"], **{k: after[k] for k in
        ("clips", "top1", "top5", "per_class", "confusion")},
        "skipped_clips": skipped,
    }
    out.mkdir(parents=True, exist_ok=True)
    plot_confusion(after["confusion"], classifier.classes, out / "confusion.png",
                   f"{classifier.card.version} on {split} ({result['clips']} clips, top-1 {result['top1']:.3f})")
    plot_reliability(bins_before, bins_after, out / "reliability.png", result["ece_before"], result["ece_after"])
    (out / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    if calibrate:
        _update_card(model_dir, lambda card: _store_calibration(card, result))
    try:
        result["reference_bank"] = write_reference(classifier, Path(data), skipped)
    finally:  # the SageMaker archive carries the calibrated card (and the bank), whatever fails
        _refresh_archive(model_dir)
    return result


def _split_for(classifier, data: Path, split: str) -> ClipDataset:
    """A split of ``data`` as the model sees it; DatasetError when its classes are not the model's."""
    classes, records = load_split(data, split)
    if classes != classifier.classes:
        raise DatasetError(f"{data}: classes {classes} differ from the model's {classifier.classes}")
    return ClipDataset(records, classifier.card.input, train=False)


def write_reference(classifier, data: Path, skipped: dict[str, str], split: str = "train") -> dict:
    """The training split's embeddings as the model's reference bank; what was written."""
    features, labels = clip_features(classifier, _split_for(classifier, data, split), skipped=skipped)
    bank = ReferenceBank.build(features, labels, classifier.card.version)
    path = bank.save(classifier.directory)
    return {"file": str(path), "clips": len(bank.labels), "split": split}


def evaluate_routing(model_dir: Path, streams_dir: Path, out: Path | None = None, alpha: float = 0.02,
                     delta: float = 0.1, progress=None) -> dict:
    """Fit the review score and its operating point on labelled streams; write them into
    ``model.json`` and the report (JSON + PNG) into ``out``."""
    from clipwatch.blobs import SegmentReader
    from inference.predictor import Endpoint

    model_dir = Path(model_dir)
    out = Path(out) if out else model_dir / "evaluation"
    streams = find_streams(streams_dir)
    classifier = load_classifier(model_dir)
    endpoint = Endpoint(classifier, SegmentReader(allowed_dirs=(Path(streams_dir).resolve(),)),
                        store=None, propose=False, second_clip=True)  # the score may use it
    skipped: dict[str, str] = {}
    try:
        observations = collect(endpoint, streams, progress, skipped)
    finally:
        endpoint.close()
    card, report = fit_routing(observations, alpha, delta)
    report.update(model=str(model_dir), model_version=classifier.card.version, data=str(streams_dir),
                  reference_bank=classifier.reference is not None, skipped_segments=skipped)
    out.mkdir(parents=True, exist_ok=True)
    (out / "routing.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_risk_coverage(report, out / "routing.png")
    _update_card(model_dir, lambda model_card: setattr(model_card, "routing", card))
    _refresh_archive(model_dir)
    return report


def _update_card(model_dir: Path, change) -> None:
    """Read ``model.json``, apply ``change`` to the card, write it back."""
    card_file = model_dir / "model.json"
    card = ModelCard.model_validate_json(card_file.read_text())
    change(card)
    card_file.write_text(card.model_dump_json(indent=2) + "\n")


def _refresh_archive(model_dir: Path) -> None:
    """Rewrite the model's ``model.tar.gz``, where it has one, from the directory as it is now."""
    if (model_dir / "model.tar.gz").is_file():
        write_model_archive(model_dir)


def _store_calibration(card: ModelCard, result: dict) -> None:
    card.temperature = result["temperature"]
    card.metrics["evaluation"] = {k: result[k] for k in (
        "split", "clips", "top1", "top5", "temperature", "ece_before", "ece_after", "calibrated_on")}
