"""A minute-by-minute model of SageMaker target tracking in front of instances whose capacity
was measured by a load test.

One instance is described by its measured curve: p90 latency at each offered rate it was
tested at, and its capacity (the most successful answers per minute it gave). Per minute of
the load profile the model

* serves up to ``instances in service × capacity`` requests; the rest wait in a backlog, and
  a request that would wait longer than ``timeout_s`` fails (client or server timeout);
* predicts p90 latency = the curve's latency at the per-instance rate + the backlog's wait;
* publishes ``InvocationsPerInstance`` = invocations / instances in service, and applies the
  policy as Application Auto Scaling does: scale out after ``out_datapoints`` consecutive
  minutes above the target to ceil(invocations / target) (during the scale-out cooldown only
  to a larger capacity than already asked for), scale in after ``in_datapoints`` minutes below
  90% of it and outside both cooldowns; a new instance serves after ``startup_s``.

It predicts shapes and orders of magnitude (when latency breaks, how long a scale-out takes to
help), not milliseconds: queueing inside a minute and instance warm-up are idealised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from pydantic import BaseModel, Field

from .stats import LoadTestResult

SCALE_IN_FRACTION = 0.9  # Application Auto Scaling's scale-in alarm sits 10% below the target


class CapacityCurve(BaseModel):
    """One instance: p90 latency (ms) at offered rates (per minute), and its capacity."""
    source: str
    rates_per_min: list[float]
    p90_ms: list[float]
    error_rates: list[float]
    capacity_per_min: float = Field(gt=0)

    @classmethod
    def seed(cls) -> "CapacityCurve":
        """The seed's ml.g4dn.2xlarge: ~300 ms up to 600 invocations/min with under 5% errors,
        saturating a little above (CPU preprocessing at 100%)."""
        return cls(source="seed: ml.g4dn.2xlarge (600/min at ~300 ms, < 5% errors)",
                   rates_per_min=[60, 300, 450, 600, 650], p90_ms=[280, 290, 300, 320, 450],
                   error_rates=[0, 0, 0, 0, 0.02], capacity_per_min=660)

    @classmethod
    def from_result(cls, result: LoadTestResult) -> "CapacityCurve":
        steps = sorted((s for s in result.steps if s.p90_ms is not None), key=lambda s: s.offered_per_min)
        if not steps:
            raise ValueError("the load-test result has no step with a successful request: "
                             "nothing to build a capacity curve from")
        n = max(1, result.instances)
        capacity = max(s.achieved_per_min for s in steps) / n
        # the latency the queue model adds on top must not be counted twice: keep the curve to
        # the steps the instance kept up with (achieved ≥ 90% of offered)
        kept = [s for s in steps if s.achieved_per_min >= 0.9 * s.offered_per_min] or steps[:1]
        return cls(source=f"load test of {result.target} ({result.started_at})",
                   rates_per_min=[s.offered_per_min / n for s in kept], p90_ms=[s.p90_ms for s in kept],
                   error_rates=[s.error_rate for s in kept], capacity_per_min=round(capacity, 2))

    def p90_at(self, rate: float) -> float:
        return float(np.interp(rate, self.rates_per_min, self.p90_ms))

    def error_rate_at(self, rate: float) -> float:
        return float(np.interp(rate, self.rates_per_min, self.error_rates))


class Policy(BaseModel):
    name: str
    target: Optional[float] = Field(default=None, gt=0)  # None: a fixed number of instances
    min_instances: int = Field(default=1, ge=1)
    max_instances: int = Field(default=1, ge=1)
    scale_out_cooldown_s: int = Field(default=600, ge=0)
    scale_in_cooldown_s: int = Field(default=600, ge=0)
    startup_s: int = Field(default=120, ge=0)
    out_datapoints: int = Field(default=3, ge=1)
    in_datapoints: int = Field(default=15, ge=1)

    def describe(self) -> str:
        if self.target is None:
            return f"{self.name}: {self.min_instances} instance(s), no autoscaling"
        return (f"{self.name}: target {self.target:g}/instance, {self.min_instances}–{self.max_instances} "
                f"instances, cooldowns out {self.scale_out_cooldown_s} s / in {self.scale_in_cooldown_s} s, "
                f"start-up {self.startup_s} s")


class Minute(BaseModel):
    minute: int
    offered: float
    in_service: int
    desired: int
    per_instance: float
    served: float
    errors: float
    error_rate: float
    backlog: float
    p90_ms: float


class Simulation(BaseModel):
    policy: Policy
    curve_source: str
    timeout_s: float
    minutes: list[Minute]
    summary: dict = Field(default_factory=dict)


def ramp(start: float, end: float, minutes: int, hold: int = 0) -> list[float]:
    """Per-minute load rising linearly from ``start`` to ``end`` over ``minutes``, then ``hold``
    minutes at ``end``."""
    if minutes < 1 or hold < 0 or start < 0 or end < 0:
        raise ValueError(f"a ramp needs minutes ≥ 1, hold ≥ 0 and rates ≥ 0 (got {start:g}→{end:g} "
                         f"over {minutes}, hold {hold})")
    step = (end - start) / max(1, minutes - 1)
    return [start + step * i for i in range(minutes)] + [end] * hold


@dataclass
class _Fleet:
    in_service: int
    desired: int
    pending: list[int] = field(default_factory=list)  # minute each pending instance serves from
    last_out: float = -math.inf
    last_in: float = -math.inf


def simulate(curve: CapacityCurve, load: list[float], policy: Policy, timeout_s: float = 8.0) -> Simulation:
    if policy.max_instances < policy.min_instances:
        raise ValueError(f"{policy.name}: max instances below min instances")
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    fleet = _Fleet(policy.min_instances, policy.min_instances)
    metrics: list[float] = []
    backlog = 0.0
    rows = []
    startup_min = math.ceil(policy.startup_s / 60)
    for minute, offered in enumerate(load):
        ready = [m for m in fleet.pending if m <= minute]
        fleet.pending = [m for m in fleet.pending if m > minute]
        fleet.in_service += len(ready)
        n = fleet.in_service
        capacity = n * curve.capacity_per_min
        per_instance = offered / n
        # the curve's own errors at this rate (measured), then the queue's
        base_errors = offered * curve.error_rate_at(min(per_instance, curve.rates_per_min[-1]))
        queue = backlog + offered - base_errors
        served = min(queue, capacity)
        before = backlog
        backlog = queue - served
        limit = capacity * timeout_s / 60.0  # the most that can wait less than the timeout
        shed = max(0.0, backlog - limit)
        backlog -= shed
        wait_ms = ((before + backlog) / 2) / capacity * 60_000.0
        p90 = min(curve.p90_at(min(per_instance, curve.capacity_per_min)) + wait_ms,
                  timeout_s * 1000.0 if shed else math.inf)
        errors = base_errors + shed
        metrics.append(per_instance)
        _autoscale(policy, fleet, metrics, offered, minute, startup_min)
        rows.append(Minute(minute=minute, offered=round(offered, 1), in_service=n, desired=fleet.desired,
                           per_instance=round(per_instance, 1), served=round(served, 1),
                           errors=round(errors, 1), error_rate=round(errors / offered, 4) if offered else 0.0,
                           backlog=round(backlog, 1), p90_ms=round(p90, 1)))
    sim = Simulation(policy=policy, curve_source=curve.source, timeout_s=timeout_s, minutes=rows)
    sim.summary = summarize(sim)
    return sim


def _autoscale(policy: Policy, fleet: _Fleet, metrics: list[float], offered: float, minute: int,
               startup_min: int) -> None:
    if policy.target is None:
        return
    t = minute * 60.0
    recent_out = metrics[-policy.out_datapoints:]
    want = min(policy.max_instances, max(policy.min_instances, math.ceil(offered / policy.target)))
    if len(recent_out) == policy.out_datapoints and all(m > policy.target for m in recent_out):
        in_cooldown = t - fleet.last_out < policy.scale_out_cooldown_s
        # within the cooldown the capacity already asked for counts: only a larger ask goes on
        if want > fleet.desired:
            fleet.pending += [minute + 1 + startup_min] * (want - fleet.desired)
            fleet.desired = want
            if not in_cooldown:
                fleet.last_out = t
        return
    recent_in = metrics[-policy.in_datapoints:]
    if (len(recent_in) == policy.in_datapoints
            and all(m < policy.target * SCALE_IN_FRACTION for m in recent_in)
            and t - fleet.last_in >= policy.scale_in_cooldown_s
            and t - fleet.last_out >= policy.scale_out_cooldown_s
            and not fleet.pending and want < fleet.in_service):
        fleet.in_service = fleet.desired = want
        fleet.last_in = t


def summarize(sim: Simulation) -> dict:
    rows = sim.minutes
    offered = sum(r.offered for r in rows)
    errors = sum(r.errors for r in rows)
    over_1s = [r.minute for r in rows if r.p90_ms > 1000]
    return {"minutes": len(rows), "peak_instances": max(r.in_service for r in rows),
            "instance_minutes": sum(r.in_service for r in rows),
            "worst_p90_ms": max(r.p90_ms for r in rows),
            "first_minute_over_1s": over_1s[0] if over_1s else None,
            "minutes_over_1s": len(over_1s),
            "errors": round(errors, 1), "error_rate": round(errors / offered, 4) if offered else 0.0}
