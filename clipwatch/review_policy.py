"""Which predictions a human should look at, and why.

The endpoint applies the policy as it builds each prediction (``inference/predictor.py``), so a
routed segment becomes a pending ReviewTask in the same store write as its prediction. Rules,
in the spirit of A2I's activation conditions:

- **uncertain**: where the model has a fitted review score and operating point
  (``inference.routing``: all signals combined, the auto-accepted error bounded), a score above
  the operating point; and calibrated confidence below ``min_confidence``, margin (top-1 −
  top-2) below ``min_margin`` or entropy above ``max_entropy``, each overridable per class (a
  class the model confuses often gets a stricter bar). Thresholds an operator sets always apply
  (they can only add reviews, never weaken the bound); unset, they default to 0.6 and 0.2 only
  for a model without an operating point (the fallback);
- **sample**: a fixed fraction of confident predictions is reviewed anyway, so the accuracy of
  what is auto-accepted is measured, not assumed. The draw is a hash of (stream, sequence), so a
  repeated event or a restarted endpoint draws the same segments;
- **budget**: at most ``budget_per_hour`` tasks per stream in any rolling hour (people are the
  scarce resource); a segment over budget is auto-accepted and says so.

Every decision lists its reasons; the task and the stored prediction keep them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping, Optional

from . import metrics
from .records import ReviewDecision


@dataclass(frozen=True)
class Thresholds:
    min_confidence: Optional[float] = None
    min_margin: Optional[float] = None
    max_entropy: Optional[float] = None


def sample_draw(stream_id: str, sequence: int) -> float:
    """A uniform number in [0, 1) fixed by the segment's key."""
    digest = hashlib.blake2b(f"{stream_id}#{sequence}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


FALLBACK = Thresholds(min_confidence=0.6, min_margin=0.2)  # for a model without an operating point


@dataclass(frozen=True)
class ReviewPolicy:
    # None: not set — FALLBACK's value for a model without an operating point, else unused
    min_confidence: Optional[float] = None  # calibrated top-1 probability below this → review
    min_margin: Optional[float] = None  # top-1 minus top-2 below this → review (two activities compete)
    max_entropy: Optional[float] = None  # nats; above this → review (None: not used)
    per_class: Mapping[str, Thresholds] = field(default_factory=dict)  # keyed by predicted label
    sample_fraction: float = 0.02  # of confident predictions, reviewed to measure accuracy
    budget_per_hour: Optional[int] = None  # tasks per stream per rolling hour (None: no cap)
    reviews_required: int = 1  # independent reviews per task (consensus when > 1)

    def thresholds(self, label: Optional[str], fallback: bool = True) -> Thresholds:
        """The thresholds in force for ``label``: its own, else the global ones, else (with
        ``fallback``, for a model without an operating point) FALLBACK's."""
        own = self.per_class.get(label or "", Thresholds())
        last = FALLBACK if fallback else Thresholds()

        def first(*values):
            return next((v for v in values if v is not None), None)

        return Thresholds(first(own.min_confidence, self.min_confidence, last.min_confidence),
                          first(own.min_margin, self.min_margin, last.min_margin),
                          first(own.max_entropy, self.max_entropy, last.max_entropy))

    def decide(self, confidence: float, margin: float, *, entropy: Optional[float] = None,
               label: Optional[str] = None, stream_id: Optional[str] = None,
               sequence: Optional[int] = None, store=None, now: Optional[float] = None,
               scored: Optional[tuple[float, list[str]]] = None) -> ReviewDecision:
        """The verdict for one prediction. ``scored``: (review score, reasons) from the model's
        operating point (``RoutingCard.verdict``); the thresholds set explicitly apply beside it,
        the fallback defaults only without it. With ``store`` (anything with
        ``count_review_tasks(stream_id, since)``) the per-stream budget is enforced too."""
        score = scored[0] if scored is not None else None
        reasons = (list(scored[1]) if scored is not None else []) + self._threshold_reasons(
            confidence, margin, entropy, label, fallback=scored is None)
        kind = "uncertain" if reasons else None
        if kind is None and stream_id is not None and sequence is not None and self.sample_fraction > 0:
            draw = sample_draw(stream_id, sequence)
            if draw < self.sample_fraction:
                kind = "sample"
                reasons.append(f"confident, drawn for an accuracy check "
                               f"({self.sample_fraction:.1%} of confident predictions)")
        decision = ReviewDecision(needs_review=kind is not None, reasons=reasons, kind=kind,
                                  uncertainty=round(score if score is not None else 1.0 - confidence, 6),
                                  score=None if score is None else round(score, 6),
                                  budget_per_hour=self.budget_per_hour,
                                  reviews_required=self.reviews_required)
        if kind is not None and store is not None and self.budget_per_hour is not None and stream_id:
            now = time.time() if now is None else now
            since = datetime.fromtimestamp(now - 3600, timezone.utc).isoformat(timespec="milliseconds")
            used = store.count_review_tasks(stream_id, since)
            if used >= self.budget_per_hour:
                decision.needs_review, decision.kind = False, None
                decision.reasons.append(f"not routed: review budget of {self.budget_per_hour} "
                                        f"tasks/hour for this stream is spent ({used} in the last hour)")
                metrics.REVIEW_ROUTING.labels("over_budget").inc()
                return decision
        metrics.REVIEW_ROUTING.labels(kind or "auto").inc()
        return decision

    def _threshold_reasons(self, confidence: float, margin: float, entropy: Optional[float],
                           label: Optional[str], fallback: bool) -> list[str]:
        t = self.thresholds(label, fallback)
        scope = f" for {label}" if label in self.per_class else ""
        reasons = []
        if t.min_confidence is not None and confidence < t.min_confidence:
            reasons.append(f"confidence {confidence:.3f} < {t.min_confidence}{scope}")
        if t.min_margin is not None and margin < t.min_margin:
            reasons.append(f"margin {margin:.3f} < {t.min_margin}{scope}")
        if entropy is not None and t.max_entropy is not None and entropy > t.max_entropy:
            reasons.append(f"entropy {entropy:.3f} > {t.max_entropy}{scope}")
        return reasons

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "ReviewPolicy":
        """``CLIPWATCH_REVIEW_*`` variables; per-class thresholds as JSON, e.g.
        ``CLIPWATCH_REVIEW_CLASS_THRESHOLDS='{"running": {"min_confidence": 0.8}}'``."""
        d = cls()

        def pick(name, default, kind=float):
            value = env.get(name)
            if value in (None, ""):
                return default
            try:
                return kind(value)
            except ValueError:
                raise ValueError(f"{name}={value!r}: expected a {kind.__name__}") from None

        try:
            per_class = {label: Thresholds(**t) for label, t in
                         json.loads(env.get("CLIPWATCH_REVIEW_CLASS_THRESHOLDS") or "{}").items()}
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"CLIPWATCH_REVIEW_CLASS_THRESHOLDS: expected JSON "
                             f'{{"<label>": {{"min_confidence": 0.8}}}} ({exc})') from None
        policy = cls(
            min_confidence=pick("CLIPWATCH_REVIEW_MIN_CONFIDENCE", d.min_confidence),
            min_margin=pick("CLIPWATCH_REVIEW_MIN_MARGIN", d.min_margin),
            max_entropy=pick("CLIPWATCH_REVIEW_MAX_ENTROPY", d.max_entropy),
            per_class=per_class,
            sample_fraction=pick("CLIPWATCH_REVIEW_SAMPLE_FRACTION", d.sample_fraction),
            budget_per_hour=pick("CLIPWATCH_REVIEW_BUDGET_PER_HOUR", d.budget_per_hour, int),
            reviews_required=pick("CLIPWATCH_REVIEW_REVIEWS_REQUIRED", d.reviews_required, int))
        if not 0 <= policy.sample_fraction <= 1:
            raise ValueError("CLIPWATCH_REVIEW_SAMPLE_FRACTION must lie in [0, 1]")
        if policy.reviews_required < 1:
            raise ValueError("CLIPWATCH_REVIEW_REVIEWS_REQUIRED must be at least 1")
        return policy
