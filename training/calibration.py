"""Temperature scaling for the classifier's confidence, and the measures that check it.

Why it matters here: for a model without a fitted review score (``inference.routing``) the
endpoint sends a prediction to human review when its top-1 probability is below
``ReviewPolicy.min_confidence`` (0.6 by default), and the score itself starts from confidence.
That threshold only means "less than 60 % likely to be right" if the probabilities are
calibrated, and networks
trained with cross-entropy are usually overconfident (Guo et al. 2017, "On Calibration of
Modern Neural Networks"): uncalibrated, too few doubtful segments would reach a reviewer.

Method (Guo et al. 2017, temperature scaling): a single scalar ``T > 0`` divides the logits
before the softmax and is fitted by minimizing the negative log-likelihood of held-out
(validation) labels. Dividing every logit by the same ``T`` never changes the argmax, so
accuracy is untouched; only confidence moves. The fitted value goes into
``ModelCard.temperature``, which ``inference.scoring.summarize`` applies at serving time.
``reliability`` and ``ece`` measure how far confidence is from accuracy, before and after.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

_GOLDEN_ITERATIONS = 60  # shrinks the log-T bracket by 0.618**60 ≈ 3e-13: far below any use
_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


def check_scores(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` (N, C) logits or probabilities and ``labels`` (N,) class indices, as arrays;
    ValueError naming the problem when they cannot be evaluated together."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.size == 0 or labels.size == 0:
        raise ValueError(f"nothing to evaluate: scores have shape {scores.shape}, "
                         f"labels {labels.shape}")
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (clips, classes), got shape {scores.shape}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (clips,), got shape {labels.shape}")
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"{scores.shape[0]} rows of scores but {labels.shape[0]} labels")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise ValueError(f"labels must lie in [0, {scores.shape[1]}), "
                         f"got [{labels.min()}, {labels.max()}]")
    return scores, labels


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    # Log-sum-exp rather than log(softmax): a confidently wrong clip has a probability that
    # underflows to 0, and its log would be -inf instead of a large finite loss.
    z = logits.astype(np.float64) / temperature
    z_max = z.max(axis=1)
    log_norm = z_max + np.log(np.exp(z - z_max[:, None]).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(logits / temperature)."""
    logits, labels = check_scores(logits, labels)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return _nll(logits, labels, temperature)


def _golden_section_min(f: Callable[[float], float], a: float, b: float) -> float:
    """Argmin of a unimodal ``f`` on [a, b]; one new evaluation per iteration."""
    c, d = b - _INV_PHI * (b - a), a + _INV_PHI * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(_GOLDEN_ITERATIONS):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _INV_PHI * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + _INV_PHI * (b - a)
            fd = f(d)
    return (a + b) / 2.0


def fit_temperature(logits, labels, lo: float = 0.05, hi: float = 20.0) -> float:
    """The temperature in [lo, hi] minimizing NLL on held-out logits, or 1.0 when no
    temperature in the bracket beats leaving the logits as they are.

    The search runs on log T: NLL is unimodal there, and a multiplicative scale gives
    T = 0.1 and T = 10 the same resolution."""
    logits, labels = check_scores(logits, labels)
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    logits = logits.astype(np.float64)
    log_t = _golden_section_min(lambda s: _nll(logits, labels, math.exp(s)),
                                math.log(lo), math.log(hi))
    fitted = math.exp(log_t)
    # A bracket that excludes 1.0 (or a degenerate validation set) must not leave the
    # model worse calibrated than it was.
    return fitted if _nll(logits, labels, fitted) < _nll(logits, labels, 1.0) else 1.0


def reliability(probs, labels, bins: int = 15) -> list[dict]:
    """Per equal-width top-1 confidence bin (lower, upper]: its edges, how many clips fall in
    it, their mean top-1 probability (``confidence``) and the fraction predicted right
    (``accuracy``). Empty bins are kept, with count, confidence and accuracy 0, so every
    call returns the same ``bins`` rows."""
    probs, labels = check_scores(probs, labels)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    confidence = probs.max(axis=1).astype(np.float64)
    if confidence.min() < 0 or confidence.max() > 1:
        raise ValueError("probs must be probabilities in [0, 1]; were logits passed?")
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Intervals are closed on the right as in Guo et al.; a confidence of exactly 0 (only
    # possible with degenerate input) joins the first bin.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    return [_bin(edges[i], edges[i + 1], confidence[which == i], correct[which == i])
            for i in range(bins)]


def _bin(lower: float, upper: float, confidence: np.ndarray, correct: np.ndarray) -> dict:
    count = len(confidence)
    return {"lower": float(lower), "upper": float(upper), "count": count,
            "confidence": float(confidence.mean()) if count else 0.0,
            "accuracy": float(correct.mean()) if count else 0.0}


def ece(probs, labels, bins: int = 15) -> float:
    """Expected calibration error: |accuracy − confidence| per bin, weighted by the share of
    clips in the bin (top-1 confidence, equal-width bins)."""
    rows = reliability(probs, labels, bins)
    total = sum(r["count"] for r in rows)
    return float(sum(r["count"] / total * abs(r["accuracy"] - r["confidence"]) for r in rows))
