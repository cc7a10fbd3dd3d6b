"""Per-step statistics of a run, and the run's result as saved to JSON (the input of the
recommendation and of the capacity simulator)."""

from __future__ import annotations

from collections import Counter
from typing import Optional

import numpy as np
from pydantic import BaseModel, Field

from .generator import StageRun

PERCENTILES = (50, 90, 99)


class StepStats(BaseModel):
    index: int
    offered_per_min: float            # the profile's rate for this step
    seconds: float                    # the step's scheduled length
    sent: int                         # requests due (and handed to a sender) in the step
    completed: int
    ok: int
    errors: int                       # answered with an error, timed out, or never answered
    error_rate: float
    errors_by_code: dict[str, int]
    achieved_per_min: float           # successful answers per minute of the step's wall window
    p50_ms: Optional[float] = None    # latency from the scheduled time, successful requests
    p90_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    max_ms: Optional[float] = None
    service_p50_ms: Optional[float] = None  # from the actual send (what a closed loop would see)
    send_lag_p99_ms: Optional[float] = None  # the generator's own lateness: should be ~0

    def percentile_ms(self, name: str) -> Optional[float]:
        return getattr(self, f"{name}_ms")


def _pct(values: list[float], q: float) -> Optional[float]:
    return round(float(np.percentile(values, q)), 1) if values else None


def step_stats(run: StageRun) -> StepStats:
    samples = run.samples
    ok = [s for s in samples if s.ok]
    # a request still pending at the end never answered: it counts as an error
    codes = Counter(s.code if s.completed else "no_answer" for s in samples if not s.ok)
    latencies = [s.latency_ms for s in ok]
    window = max(run.end - run.start, run.stage.seconds)
    sent = len(samples)
    errors = sum(codes.values())
    return StepStats(
        index=run.index, offered_per_min=round(run.stage.rate_per_min, 3),
        seconds=round(run.stage.seconds, 3), sent=sent,
        completed=sum(s.completed for s in samples), ok=len(ok), errors=errors,
        error_rate=round(errors / sent, 4) if sent else 0.0, errors_by_code=dict(codes),
        achieved_per_min=round(len(ok) / window * 60.0, 2) if window > 0 else 0.0,
        p50_ms=_pct(latencies, 50), p90_ms=_pct(latencies, 90), p99_ms=_pct(latencies, 99),
        max_ms=round(max(latencies), 1) if latencies else None,
        service_p50_ms=_pct([s.service_ms for s in ok], 50),
        send_lag_p99_ms=_pct([s.send_lag_ms for s in samples if s.completed], 99),
    )


class LoadTestResult(BaseModel):
    """Everything a run measured, with how it was run (so it can be repeated)."""
    target: str
    instances: int = 1                # instances behind the target: rates are divided by it
    profile: str
    arrivals: str
    started_at: str
    duration_s: float
    command: str = ""
    machine: dict = Field(default_factory=dict)
    unreachable: Optional[str] = None  # set when the target never answered
    interrupted: bool = False
    steps: list[StepStats] = Field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self.steps)
