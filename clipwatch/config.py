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
        )
