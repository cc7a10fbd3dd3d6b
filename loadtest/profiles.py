"""Load profiles: when requests are due. A profile is a list of stages, each a constant arrival
rate for some seconds; a ramp is many short stages. Nonsense values are refused with a message
that names the value, before anything is sent."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

MAX_RATE_PER_MIN = 60_000.0   # 1,000 requests/s: far beyond one instance; a typo guard
MAX_TOTAL_SECONDS = 6 * 3600.0
MAX_STAGES = 1000


class ProfileError(ValueError):
    """A load profile that cannot be run; the message says which value and why."""


@dataclass(frozen=True)
class Stage:
    rate_per_min: float
    seconds: float

    @property
    def expected_requests(self) -> float:
        return self.rate_per_min * self.seconds / 60.0


def _check_rate(name: str, rate: float, allow_zero: bool = False) -> float:
    if not math.isfinite(rate) or rate < 0 or (rate == 0 and not allow_zero):
        raise ProfileError(f"{name} must be a positive number of requests per minute, got {rate!r}")
    if rate > MAX_RATE_PER_MIN:
        raise ProfileError(f"{name} of {rate:g}/min is above the generator's limit of "
                           f"{MAX_RATE_PER_MIN:g}/min")
    return float(rate)


def _check_seconds(name: str, seconds: float) -> float:
    if not math.isfinite(seconds) or seconds <= 0:
        raise ProfileError(f"{name} must be a positive number of seconds, got {seconds!r}")
    return float(seconds)


def _check_total(stages: list[Stage]) -> list[Stage]:
    if not stages:
        raise ProfileError("the profile has no stages")
    if len(stages) > MAX_STAGES:
        raise ProfileError(f"the profile has {len(stages)} stages; the limit is {MAX_STAGES}")
    total = sum(s.seconds for s in stages)
    if total > MAX_TOTAL_SECONDS:
        raise ProfileError(f"the profile lasts {total:g} s; the limit is {MAX_TOTAL_SECONDS:g} s")
    if sum(s.expected_requests for s in stages) < 1:
        raise ProfileError("the profile sends fewer than one request: raise the rate or the duration")
    return stages


def step_profile(rates: list[float], step_seconds: float) -> list[Stage]:
    """One stage per rate, each ``step_seconds`` long (the classic capacity staircase)."""
    seconds = _check_seconds("--step-seconds", step_seconds)
    if not rates:
        raise ProfileError("--rates needs at least one rate")
    return _check_total([Stage(_check_rate(f"rate #{i + 1}", r), seconds) for i, r in enumerate(rates)])


def ramp_profile(start_rate: float, end_rate: float, seconds: float, step_seconds: float) -> list[Stage]:
    """A linear ramp from ``start_rate`` to ``end_rate`` over ``seconds``, as stages of
    ``step_seconds`` whose rate is the ramp's value at the stage's middle."""
    start = _check_rate("--start-rate", start_rate, allow_zero=True)
    end = _check_rate("--end-rate", end_rate, allow_zero=True)
    total = _check_seconds("--duration", seconds)
    step = _check_seconds("--step-seconds", step_seconds)
    if step > total:
        raise ProfileError(f"--step-seconds ({step:g}) is longer than the ramp ({total:g} s)")
    n = max(1, round(total / step))
    width = total / n
    stages = [Stage(start + (end - start) * (i + 0.5) / n, width) for i in range(n)]
    return _check_total([s for s in stages if s.rate_per_min > 0] or stages)


def parse_rates(text: str) -> list[float]:
    """``"30,60,90"`` → [30, 60, 90]; a bad item is named."""
    out = []
    for item in text.split(","):
        item = item.strip()
        try:
            out.append(float(item))
        except ValueError:
            raise ProfileError(f"--rates: {item!r} is not a number (expected e.g. 30,60,90)") from None
    return out


def arrival_offsets(stage: Stage, start: float, poisson: bool, rng: random.Random) -> list[float]:
    """Scheduled send times (seconds from the run's start) of one stage's requests: evenly
    spaced, or a Poisson process (exponential gaps) for many independent streams."""
    if stage.rate_per_min <= 0:
        return []
    gap = 60.0 / stage.rate_per_min
    times, t = [], start + (rng.expovariate(1.0 / gap) if poisson else gap / 2)
    end = start + stage.seconds
    while t < end:
        times.append(t)
        t += rng.expovariate(1.0 / gap) if poisson else gap
    return times
