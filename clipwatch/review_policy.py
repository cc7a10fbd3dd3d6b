"""Which predictions a human should look at. The endpoint applies this at write time so a
low-confidence segment becomes a pending ReviewTask in the same store as its prediction."""

from __future__ import annotations

from dataclasses import dataclass

from .records import ReviewDecision


@dataclass(frozen=True)
class ReviewPolicy:
    min_confidence: float = 0.6  # calibrated top-1 probability below this → review
    min_margin: float = 0.2  # top-1 minus top-2 below this → review (two activities compete)

    def decide(self, confidence: float, margin: float) -> ReviewDecision:
        reasons = []
        if confidence < self.min_confidence:
            reasons.append(f"confidence {confidence:.3f} < {self.min_confidence}")
        if margin < self.min_margin:
            reasons.append(f"margin {margin:.3f} < {self.min_margin}")
        return ReviewDecision(needs_review=bool(reasons), reasons=reasons)
