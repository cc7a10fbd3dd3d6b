"""Server-side settings, read from the environment once at start-up (the SageMaker container
contract passes configuration as environment variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .review_policy import ReviewPolicy

DEFAULT_STORE = "sqlite:///clipwatch.db"


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


@dataclass(frozen=True)
class AutoInt8Settings:
    """Int8 calibrated by the endpoint on the segments it serves (``inference.auto_int8``)."""

    enabled: bool = True
    calibration_clips: int = 16
    check_clips: int = 100
    attempts: int = 1  # calibrations per model (weights) that may fail before it stops trying
    min_speedup: float = 1.0  # int8 must be this much faster than the forwards it replaces
    # before calibrating: served clips OpenVINO is run and timed on beside torch (0: never), and
    # how much faster it must be to serve instead (same precision: the choice is speed alone)
    runtime_clips: int = 6
    runtime_min_speedup: float = 1.1

    @classmethod
    def from_env(cls, env) -> "AutoInt8Settings":
        """``CLIPWATCH_AUTO_INT8`` (on | off) and ``CLIPWATCH_AUTO_INT8_{CALIBRATION_CLIPS,
        CHECK_CLIPS,ATTEMPTS,MIN_SPEEDUP,RUNTIME_CLIPS,RUNTIME_MIN_SPEEDUP}``."""
        flag = env.get("CLIPWATCH_AUTO_INT8", "on").strip().lower()
        if flag not in ("on", "off", "1", "0", "true", "false"):
            raise ValueError(f"CLIPWATCH_AUTO_INT8={flag!r}: on or off")
        return cls(enabled=flag in ("on", "1", "true"),
                   calibration_clips=int(env.get("CLIPWATCH_AUTO_INT8_CALIBRATION_CLIPS", cls.calibration_clips)),
                   check_clips=int(env.get("CLIPWATCH_AUTO_INT8_CHECK_CLIPS", cls.check_clips)),
                   attempts=int(env.get("CLIPWATCH_AUTO_INT8_ATTEMPTS", cls.attempts)),
                   min_speedup=float(env.get("CLIPWATCH_AUTO_INT8_MIN_SPEEDUP", cls.min_speedup)),
                   runtime_clips=int(env.get("CLIPWATCH_AUTO_INT8_RUNTIME_CLIPS", cls.runtime_clips)),
                   runtime_min_speedup=float(env.get("CLIPWATCH_AUTO_INT8_RUNTIME_MIN_SPEEDUP",
                                                     cls.runtime_min_speedup)))


@dataclass(frozen=True)
class Settings:
    # sqlite:///path/to.db (the embedded default) or dynamodb://<predictions-table>/<tasks-table>
    store_url: str = DEFAULT_STORE
    # S3 buckets the endpoint may read; empty means any bucket its credentials reach.
    allowed_buckets: tuple[str, ...] = ()
    # Local folders the endpoint may read segments from; empty means local paths are refused,
    # because an HTTP endpoint must not read arbitrary files of its host.
    allowed_dirs: tuple[Path, ...] = ()
    max_segment_bytes: int = 64 * 1024 * 1024
    review: ReviewPolicy = field(default_factory=ReviewPolicy)
    # settings made in code follow this process's CLIPWATCH_AUTO_INT8* too
    auto_int8: AutoInt8Settings = field(default_factory=lambda: AutoInt8Settings.from_env(os.environ))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        policy = ReviewPolicy.from_env(env)  # CLIPWATCH_REVIEW_* (see clipwatch/review_policy.py)
        return cls(
            store_url=env.get("CLIPWATCH_STORE", DEFAULT_STORE),
            allowed_buckets=_csv(env.get("CLIPWATCH_ALLOWED_BUCKETS")),
            allowed_dirs=tuple(Path(d).resolve() for d in _csv(env.get("CLIPWATCH_ALLOWED_DIRS"))),
            max_segment_bytes=int(env.get("CLIPWATCH_MAX_SEGMENT_BYTES", cls.max_segment_bytes)),
            review=policy,
            auto_int8=AutoInt8Settings.from_env(env),
        )
