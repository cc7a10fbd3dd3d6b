"""Temperature scaling and calibration measures on logits whose true temperature is known:
labels are sampled from softmax(z / T), so fitting on z must find T again."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.scoring import softmax
from training.calibration import ece, fit_temperature, nll, reliability
from training.plots import plot_reliability

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sample_labels(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One class per row drawn from that row's distribution (inverse-CDF sampling)."""
    return (rng.random((len(probs), 1)) < probs.cumsum(axis=1)).argmax(axis=1)


def synthetic(n: int, classes: int = 10, temperature: float = 1.0, seed: int = 0):
    """Logits z and labels drawn from softmax(z / temperature)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, (n, classes))
    return z, sample_labels(rng, softmax(z, temperature))


def test_nll_of_uniform_logits_is_log_classes():
    assert nll(np.zeros((7, 5)), np.arange(7) % 5) == pytest.approx(math.log(5))


def test_nll_matches_direct_formula_and_scales_with_temperature():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    labels = np.array([0, 1])
    direct = -np.mean(np.log(softmax(logits / 2.0)[[0, 1], labels]))
    assert nll(logits, labels, temperature=2.0) == pytest.approx(direct)
    assert nll(logits, labels, temperature=2.0) == pytest.approx(nll(logits / 2.0, labels))


def test_nll_stays_finite_for_confidently_wrong_logits():
    # softmax gives the label probability exactly 0 here; log-sum-exp still gives the loss.
    assert nll(np.array([[1000.0, 0.0]]), np.array([1])) == pytest.approx(1000.0)


def test_fit_temperature_recovers_the_generating_temperature():
    z, labels = synthetic(20000, temperature=2.5)
    assert fit_temperature(z, labels) == pytest.approx(2.5, rel=0.05)


def test_fit_temperature_sharpens_separable_logits_and_never_hurts():
    labels = np.arange(200) % 4
    logits = np.eye(4)[labels] * 5.0  # always right, but only ~98 % sure
    t = fit_temperature(logits, labels)
    assert t < 0.5
    assert nll(logits, labels, t) <= nll(logits, labels, 1.0)


def test_fit_temperature_keeps_one_when_the_bracket_cannot_improve_it():
    z, labels = synthetic(5000, temperature=1.0)
    assert fit_temperature(z, labels, lo=2.0, hi=20.0) == 1.0


@pytest.mark.parametrize("logits, labels, message", [
    (np.zeros((0, 3)), np.zeros(0, int), "nothing to evaluate"),
    ([], [], "nothing to evaluate"),
    (np.zeros((4, 3)), np.zeros(5, int), "4 rows of scores but 5 labels"),
    (np.zeros(4), np.zeros(4, int), "must be 2-D"),
    (np.zeros((4, 3)), np.zeros((4, 1), int), "must be 1-D"),
    (np.zeros((4, 3)), np.array([0, 1, 2, 3]), r"must lie in \[0, 3\)"),
    (np.zeros((4, 3)), np.zeros(4), "integer class indices"),
])
def test_fit_temperature_rejects_bad_input(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        fit_temperature(logits, labels)


def test_fit_temperature_rejects_a_bad_bracket():
    with pytest.raises(ValueError, match="0 < lo < hi"):
        fit_temperature(np.zeros((2, 2)), np.array([0, 1]), lo=3.0, hi=2.0)


def test_ece_is_zero_when_accuracy_equals_confidence_in_every_bin():
    # Three bins by construction: 70 % sure and right 7 times in 10, 75 % sure and right
    # 3 times in 4, certain and always right.
    probs = np.array([[0.7, 0.3]] * 10 + [[0.25, 0.75]] * 4 + [[1.0, 0.0]] * 5)
    labels = np.array([0] * 7 + [1] * 3 + [1] * 3 + [0] + [0] * 5)
    assert ece(probs, labels) == pytest.approx(0.0, abs=1e-12)
    assert [b["count"] for b in reliability(probs, labels) if b["count"]] == [10, 4, 5]


def test_ece_and_reliability_on_a_hand_computed_example():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.45, 0.55], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 0, 1])  # right, wrong, right, wrong, right
    rows = reliability(probs, labels, bins=4)
    assert [(r["lower"], r["upper"], r["count"]) for r in rows] == [
        (0.0, 0.25, 0), (0.25, 0.5, 0), (0.5, 0.75, 3), (0.75, 1.0, 2)]
    # (0.5, 0.75]: confidence (0.6 + 0.55 + 0.7) / 3, accuracy 2/3, |gap| = 0.05.
    # (0.75, 1]: confidence 0.85, accuracy 1/2, |gap| = 0.35.
    assert rows[2]["confidence"] == pytest.approx(0.6166667, abs=1e-6)
    assert rows[2]["accuracy"] == pytest.approx(2 / 3)
    assert rows[3] == pytest.approx({"lower": 0.75, "upper": 1.0, "count": 2,
                                     "confidence": 0.85, "accuracy": 0.5})
    assert ece(probs, labels, bins=4) == pytest.approx(3 / 5 * 0.05 + 2 / 5 * 0.35)


def test_reliability_puts_certainty_in_the_last_bin_and_rejects_logits():
    rows = reliability(np.array([[1.0, 0.0]]), np.array([0]), bins=10)
    assert rows[-1]["count"] == 1 and sum(r["count"] for r in rows) == 1
    with pytest.raises(ValueError, match="were logits passed"):
        reliability(np.array([[3.0, -1.0]]), np.array([0]))


def test_temperature_scaling_repairs_overconfident_logits(tmp_path):
    z, labels = synthetic(20000, temperature=1.0, seed=1)
    overconfident = 3.0 * z
    t = fit_temperature(overconfident, labels)
    before = ece(softmax(overconfident), labels)
    after = ece(softmax(overconfident, t), labels)
    assert t == pytest.approx(3.0, rel=0.05)
    assert before > 0.1 and after < 0.02

    out = plot_reliability(reliability(softmax(overconfident), labels),
                           reliability(softmax(overconfident, t), labels),
                           tmp_path / "plots" / "reliability.png", before, after)
    assert out == tmp_path / "plots" / "reliability.png"
    assert out.read_bytes().startswith(PNG_MAGIC)
