"""Evaluation metrics on a hand-worked example, and the confusion-matrix figure."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from training.calibration import nll
from training.metrics import confusion_matrix, per_class, summarize, top_k_accuracy
from training.plots import plot_confusion

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSES = ["walking", "running", "jumping", "waving"]
# "jumping" is never predicted; "waving" never occurs.
LABELS = np.array([0, 0, 0, 1, 1, 2])
PREDICTIONS = np.array([0, 0, 1, 1, 0, 1])
CONFUSION = [[2, 1, 0, 0],
             [1, 1, 0, 0],
             [0, 1, 0, 0],
             [0, 0, 0, 0]]


def logits_predicting(predictions: np.ndarray, classes: int) -> np.ndarray:
    """Logits whose top-1 is ``predictions`` and whose runner-up is the next class."""
    rows = np.arange(len(predictions))
    logits = np.zeros((len(predictions), classes))
    logits[rows, predictions] = 3.0
    logits[rows, (predictions + 1) % classes] = 1.0
    return logits


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    conf = confusion_matrix(LABELS, PREDICTIONS, 4)
    assert conf.tolist() == CONFUSION
    assert np.issubdtype(conf.dtype, np.integer)


def test_confusion_matrix_rejects_out_of_range_classes():
    with pytest.raises(ValueError, match=r"predictions must lie in \[0, 4\)"):
        confusion_matrix(LABELS, np.array([0, 0, 1, 1, 0, 4]), 4)
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix(LABELS, PREDICTIONS[:-1], 4)


def test_per_class_precision_recall_f1_by_hand():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0/0 must not warn
        rows = per_class(np.array(CONFUSION), CLASSES)
    by_name = {r["class"]: r for r in rows}
    assert by_name["walking"] == pytest.approx(
        {"class": "walking", "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    # running: 1 right of 3 predicted, 1 of 2 true; F1 = 2·(1/3)(1/2) / (1/3 + 1/2) = 0.4.
    assert by_name["running"] == pytest.approx(
        {"class": "running", "precision": 1 / 3, "recall": 0.5, "f1": 0.4, "support": 2})
    assert by_name["jumping"] == {"class": "jumping", "precision": 0.0, "recall": 0.0,
                                  "f1": 0.0, "support": 1}
    assert by_name["waving"] == {"class": "waving", "precision": 0.0, "recall": 0.0,
                                 "f1": 0.0, "support": 0}


def test_per_class_rejects_a_mismatched_class_list():
    with pytest.raises(ValueError, match="does not match 3 classes"):
        per_class(np.array(CONFUSION), CLASSES[:3])


def test_top_k_accuracy():
    logits = logits_predicting(PREDICTIONS, 4)
    assert top_k_accuracy(logits, LABELS, 1) == pytest.approx(3 / 6)
    # Runners-up are prediction + 1: that rescues the 5th clip (label 1, predicted 0) and the
    # 6th (label 2, predicted 1) but not the 3rd (label 0, predicted 1).
    assert top_k_accuracy(logits, LABELS, 2) == pytest.approx(5 / 6)
    assert top_k_accuracy(logits, LABELS, 5) == 1.0  # capped at 4 classes
    with pytest.raises(ValueError, match="k must be at least 1"):
        top_k_accuracy(logits, LABELS, 0)


def test_summarize_reports_everything_as_plain_python():
    logits = logits_predicting(PREDICTIONS, 4)
    report = summarize(logits, LABELS, CLASSES, temperature=2.0)
    assert json.loads(json.dumps(report)) == report
    assert report["clips"] == 6
    assert report["top1"] == pytest.approx(0.5)
    assert report["top5"] == 1.0
    assert report["confusion"] == CONFUSION
    assert [r["class"] for r in report["per_class"]] == CLASSES
    assert report["nll"] == pytest.approx(nll(logits, LABELS, 2.0))
    assert 0.0 <= report["ece"] <= 1.0
    # Temperature moves confidence, never the ranking.
    assert summarize(logits, LABELS, CLASSES)["top1"] == report["top1"]
    assert summarize(logits, LABELS, CLASSES)["nll"] != report["nll"]


def test_summarize_rejects_a_mismatched_class_list():
    with pytest.raises(ValueError, match="4 classes but 3 names"):
        summarize(logits_predicting(PREDICTIONS, 4), LABELS, CLASSES[:3])


def test_plot_confusion_writes_a_png(tmp_path):
    out = plot_confusion(np.array(CONFUSION), CLASSES, tmp_path / "a" / "b" / "confusion.png",
                         "validation")
    assert out == tmp_path / "a" / "b" / "confusion.png"
    assert out.stat().st_size > 1000
    assert out.read_bytes().startswith(PNG_MAGIC)
