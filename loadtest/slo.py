"""The service level objective and the search for the highest load that meets it."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field

from .stats import StepStats


class Slo(BaseModel):
    percentile: Literal["p50", "p90", "p99"] = "p90"
    latency_ms: float = Field(gt=0)
    max_error_rate: float = Field(default=0.05, ge=0, le=1)  # the seed's "under 5% errors"
    min_requests: int = Field(default=5, ge=1)  # fewer samples say nothing about a percentile

    def describe(self) -> str:
        return f"{self.percentile} ≤ {self.latency_ms:g} ms and errors < {self.max_error_rate:.0%}"


class Verdict(BaseModel):
    step: int
    offered_per_min: float
    passed: bool
    reasons: list[str]


def judge(step: StepStats, slo: Slo) -> Verdict:
    reasons = []
    latency = step.percentile_ms(slo.percentile)
    if step.sent < slo.min_requests:
        reasons.append(f"only {step.sent} requests (need {slo.min_requests})")
    if latency is None:
        reasons.append("no successful request")
    elif latency > slo.latency_ms:
        reasons.append(f"{slo.percentile} {latency:g} ms > {slo.latency_ms:g} ms")
    if step.error_rate >= slo.max_error_rate:
        reasons.append(f"error rate {step.error_rate:.1%} ≥ {slo.max_error_rate:.0%}")
    return Verdict(step=step.index, offered_per_min=step.offered_per_min, passed=not reasons,
                   reasons=reasons)


class SearchOutcome(BaseModel):
    slo: Slo
    verdicts: list[Verdict]
    best_step: Optional[int] = None
    max_rate_per_min: Optional[float] = None          # for the whole target
    max_rate_per_instance: Optional[float] = None
    summary: str


def best_rate(steps: list[StepStats], slo: Slo, instances: int = 1) -> SearchOutcome:
    """The highest offered rate whose step met the SLO. A passing step above a failing one
    still counts (noise can fail a middle step), but the summary says so."""
    verdicts = [judge(s, slo) for s in steps]
    passing = [(s, v) for s, v in zip(steps, verdicts) if v.passed]
    if not steps:
        return SearchOutcome(slo=slo, verdicts=[], summary="no step was measured")
    if not passing:
        lowest = min(zip(steps, verdicts), key=lambda sv: sv[0].offered_per_min)
        return SearchOutcome(slo=slo, verdicts=verdicts, summary=(
            f"no load met the SLO ({slo.describe()}): the lowest step, "
            f"{lowest[0].offered_per_min:g}/min, had {'; '.join(lowest[1].reasons)}"))
    best, _ = max(passing, key=lambda sv: sv[0].offered_per_min)
    failed_below = [v for s, v in zip(steps, verdicts)
                    if not v.passed and s.offered_per_min < best.offered_per_min]
    per_instance = best.offered_per_min / instances
    summary = (f"{best.offered_per_min:g}/min met the SLO ({slo.describe()}): "
               f"{best.percentile_ms(slo.percentile):g} ms, {best.error_rate:.1%} errors")
    if instances > 1:
        summary += f"; {per_instance:g}/min per instance over {instances}"
    if failed_below:
        summary += (f"; note: lower step(s) at {', '.join(f'{v.offered_per_min:g}' for v in failed_below)}"
                    "/min failed it (noise?)")
    return SearchOutcome(slo=slo, verdicts=verdicts, best_step=best.index,
                         max_rate_per_min=best.offered_per_min,
                         max_rate_per_instance=round(per_instance, 3), summary=summary)
