"""`clipwatch quantize`: calibrate a model directory's int8 module on clips of a dataset and
check it against fp32 on clips it was not calibrated on, before the endpoint may serve it.

Calibration takes ``clips`` clips spread evenly over the calibration split's classes; the
check compares top-1 with the fp32 network (the same graph, PyTorch fp32) on the whole check
split. Below ``inference.quantize.MIN_AGREEMENT`` the module is not saved unless forced.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from clipwatch.records import utc_now
from inference import quantize
from inference.model import Classifier, load_classifier
from inference.model_archive import write_model_archive
from inference.runtime import TorchRuntime

from .datasets import ClipDataset, DatasetError, dataset_logits, iterate_batches, load_split


def spread_over_classes(labels: list[int], count: int) -> list[int]:
    """Up to ``count`` indices, taking each class in turn, so every class is observed."""
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    queues = [list(v) for _, v in sorted(by_class.items())]
    picked: list[int] = []
    while len(picked) < count and any(queues):
        for q in queues:
            if q and len(picked) < count:
                picked.append(q.pop(0))
    return picked


def calibrate_int8(model_dir: Path, data: Path, calibration_split: str = "train",
                   check_split: str = "val", clips: int = 64, batch_size: int = 8,
                   force: bool = False) -> dict:
    model_dir, data = Path(model_dir), Path(data)
    fp32 = load_classifier(model_dir, runtime="torch", precision="fp32")
    spec, classes = fp32.card.input, fp32.classes
    skipped: dict[str, str] = {}

    def dataset(split: str) -> ClipDataset:
        split_classes, records = load_split(data, split)
        if split_classes != classes:
            raise DatasetError(f"{data}: classes {split_classes} differ from the model's {classes}")
        return ClipDataset(records, spec, train=False)

    calibration = dataset(calibration_split)
    order = spread_over_classes([r.label for r in calibration.records], clips)
    with ThreadPoolExecutor(2) as pool:
        batches = (x for x, _ in iterate_batches(calibration, order, batch_size, pool, 0, skipped))
        module = quantize.quantize(model_dir, batches)
        check = dataset(check_split)
        int8 = Classifier(TorchRuntime(model_dir, "int8", module=module), fp32.card, classes)
        # One pass over the check split: each batch is decoded once and run by both networks.
        both, labels = dataset_logits(lambda x: np.stack([fp32.logits(x), int8.logits(x)], axis=1),
                                      check, pool, batch_size, skipped)
    reference, int8_logits = both[:, 0], both[:, 1]
    record = quantize.Int8Record(
        calibration_clips=len(order), calibration_data=f"{data} ({calibration_split})",
        checked_clips=len(labels), agreement=round(quantize.top1_agreement(int8_logits, reference), 4),
        created_at=utc_now())
    accepted = record.agreement >= quantize.MIN_AGREEMENT
    if accepted or force:
        quantize.save(module, model_dir, record)
        write_model_archive(model_dir)
    return {"model": str(model_dir), "saved": accepted or force, "accepted": accepted,
            "int8": record.model_dump(), "check_split": check_split,
            "fp32_top1": round(float(np.mean(reference.argmax(1) == labels)), 4),
            "int8_top1": round(float(np.mean(int8_logits.argmax(1) == labels)), 4),
            "skipped_clips": skipped}
