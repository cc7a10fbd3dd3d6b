"""One review score from all the signals, and the operating point that bounds the error of what
is auto-accepted — as the endpoint applies them (``training.routing`` fits both).

The score is a logistic regression on the standardised signals (``FEATURES``), fitted on
held-out labelled segments to predict "the model is wrong": a small, documented model, not
hand-tuned weights. A segment goes to review when its score is above the card's ``threshold``,
chosen on a separate calibration split so that the auto-accepted error is at most ``alpha`` with
confidence ``1 − delta`` (Clopper–Pearson bounds tested in a fixed sequence, Learn then Test,
with a design effect for errors that come in runs; ``training.routing`` says how). Both live in ``model.json`` under ``routing``; a model without
them is routed by ``ReviewPolicy``'s thresholds, as before.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from pydantic import BaseModel, Field

from clipwatch.records import Prediction

# (name, what it measures) in the order of the score's weights
FEATURES: tuple[tuple[str, str], ...] = (
    ("doubt", "1 − calibrated confidence"),
    ("margin", "top-1 minus top-2 probability"),
    ("entropy", "of the class distribution (nats)"),
    ("novelty", "cosine distance to the nearest training clips"),
    ("class_novelty", "the same, among training clips of the predicted class"),
    ("evidence", "log-sum-exp of the calibrated logits (low: nothing the model knows is there)"),
    ("motion_atypical", "|z| of the clip's motion against correct predictions of its label"),
    ("disagreement", "1 − a second clip's probability for the label (0: not taken)"),
    ("label_error", "how often the predicted label was wrong on held-out segments (the fit split)"),
)
FEATURE_NAMES = tuple(name for name, _ in FEATURES)

# The endpoint looks at a second clip when the first gives its label less than this: the rule
# must be the same where the score is fitted and where it is served, so it is one constant.
SECOND_CLIP_BELOW = 0.9


class RoutingCard(BaseModel):
    """``model.json``'s ``routing``: the fitted score and its operating point."""

    method: str
    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    # per label: (mean, std) of the motion signal over its correct predictions (fit split)
    motion_by_label: dict[str, tuple[float, float]] = Field(default_factory=dict)
    # per label: share of the fit split's predictions of it that were wrong (Laplace-smoothed);
    # a label not seen there gets the fit split's overall error
    label_error: dict[str, float] = Field(default_factory=dict)
    error_rate: float = 0.0
    threshold: float  # route to review when the score is above it
    alpha: float  # target error of auto-accepted predictions
    delta: float  # the bound holds with probability 1 − delta
    second_clip_below: float = SECOND_CLIP_BELOW
    calibration: dict = Field(default_factory=dict)  # n, accepted, errors, upper bound, review rate
    reference: dict = Field(default_factory=dict)  # calibration means: the drift reference
    fitted_at: str = ""

    def vector(self, p: Prediction) -> np.ndarray:
        return feature_vector(p, self.motion_by_label, self.label_error, self.error_rate)

    def score(self, x: np.ndarray) -> float:
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept))))

    def verdict(self, p: Prediction) -> tuple[float, list[str]]:
        """(score, reasons): reasons are empty when the prediction is auto-accepted; else the
        score against the threshold and the signals that pushed it up most."""
        x = self.vector(p)
        score = self.score(x)
        if score <= self.threshold:
            return score, []
        push = self._push(x)
        top = [i for i in np.argsort(-push)[:2] if push[i] > 0]
        why = ", ".join(f"{self.features[i]} {x[i]:.3f}" for i in top)
        return score, [f"review score {score:.3f} > {self.threshold:.3f} "
                       f"(auto-accepted error ≤ {self.alpha:.0%} at {1 - self.delta:.0%} confidence)"
                       + (f": {why}" if why else "")]

    def top_signal(self, p: Prediction) -> str:
        """The signal that pushed this prediction's score up most: what the demo counts."""
        return self.features[int(np.argmax(self._push(self.vector(p))))]

    def _push(self, x: np.ndarray) -> np.ndarray:
        """Each signal's term in the score's logit, relative to an average segment."""
        return (x - np.asarray(self.mean)) / np.asarray(self.scale) * np.asarray(self.coef)


def motion_z(motion: float, label: str, motion_by_label: dict[str, tuple[float, float]]) -> float:
    mean, std = motion_by_label.get(label, (motion, 1.0))
    return abs(motion - mean) / max(std, 1e-6)


def feature_vector(p: Prediction, motion_by_label: dict[str, tuple[float, float]],
                   label_error: dict[str, float], error_rate: float) -> np.ndarray:
    """The signals of one prediction in ``FEATURES`` order. A model without a reference bank
    has no novelty: 0, which its routing card (fitted without it) gives no weight."""
    s = p.signals
    if s is None:
        raise ValueError(f"{p.stream_id}#{p.sequence}: prediction carries no signals")
    return np.array([
        1.0 - p.confidence, p.margin, p.entropy,
        s.novelty if s.novelty is not None else 0.0,
        s.class_novelty if s.class_novelty is not None else 0.0,
        s.evidence,
        motion_z(s.motion, p.label, motion_by_label),
        s.disagreement if s.disagreement is not None else 0.0,
        label_error.get(p.label, error_rate),
    ], dtype=np.float64)


def contradicted(before: Optional[Prediction], middle: Prediction, after: Optional[Prediction]) -> bool:
    """Temporal context: both neighbours on the stream agree with each other and not with the
    middle segment (a one-segment blip inside one activity)."""
    return (before is not None and after is not None
            and before.sequence == middle.sequence - 1 and after.sequence == middle.sequence + 1
            and before.label == after.label != middle.label)
