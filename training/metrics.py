"""Evaluation of the classifier on labelled clips: confusion matrix, top-k accuracy,
per-class precision/recall/F1, and one JSON-ready summary that also reports calibration
(NLL, ECE) at the temperature the endpoint will serve with.

Everything is computed from probabilities made by ``inference.scoring.softmax``, the
endpoint's own, so offline numbers describe what serving will actually report.
"""

from __future__ import annotations

import numpy as np

from inference.scoring import softmax

from .calibration import check_scores, ece, nll


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int counts: rows are true classes, columns predicted."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must be "
                         "1-D and the same length")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes})")
    # Each (true, predicted) pair gets one flat index, so one bincount fills the matrix.
    flat = labels.astype(np.int64) * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def top_k_accuracy(logits_or_probs, labels, k: int) -> float:
    """Share of clips whose label is among the k highest scores (k capped at the number of
    classes). Logits and probabilities give the same answer: softmax keeps the order."""
    scores, labels = check_scores(logits_or_probs, labels)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, scores.shape[1])
    # A stable sort breaks ties towards the lower class index, as argmax does, so top-1 here
    # agrees with the predictions in the confusion matrix even on tied scores.
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # 0 where undefined (a class never predicted, or absent from the labels): a number that
    # serializes to JSON and sorts, where nan would do neither and warn on the way.
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)),
                     where=denominator > 0)


def per_class(conf: np.ndarray, classes: list[str]) -> list[dict]:
    """Precision, recall, F1 and support (true clips) of each class, from a confusion matrix
    with true classes as rows."""
    conf = np.asarray(conf)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1] or conf.shape[0] != len(classes):
        raise ValueError(f"confusion matrix {conf.shape} does not match {len(classes)} classes")
    hits = np.diag(conf).astype(np.float64)
    precision = _ratio(hits, conf.sum(axis=0))
    recall = _ratio(hits, conf.sum(axis=1))
    f1 = _ratio(2 * precision * recall, precision + recall)
    support = conf.sum(axis=1)
    return [{"class": name, "precision": float(p), "recall": float(r), "f1": float(f),
             "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support)]


def summarize(logits, labels, classes: list[str], temperature: float = 1.0) -> dict:
    """Every evaluation number for one set of clips, on softmax(logits / temperature), as
    plain Python types (ready for ``ModelCard.metrics`` or a JSON report)."""
    logits, labels = check_scores(logits, labels)
    if logits.shape[1] != len(classes):
        raise ValueError(f"logits have {logits.shape[1]} classes but {len(classes)} names")
    probs = softmax(logits, temperature)
    conf = confusion_matrix(labels, probs.argmax(axis=1), len(classes))
    return {"clips": int(len(labels)),
            "top1": top_k_accuracy(probs, labels, 1),
            "top5": top_k_accuracy(probs, labels, 5),
            "per_class": per_class(conf, classes),
            "confusion": conf.tolist(),
            "nll": nll(logits, labels, temperature),
            "ece": ece(probs, labels)}
