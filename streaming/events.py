"""What travels on the bus. Every topic is keyed by stream id, so a stream's events stay in
order on one partition; values are these models as JSON."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from pydantic import BaseModel, Field

from clipwatch.records import InvocationRequest


@dataclass(frozen=True)
class Topics:
    segments: str
    predictions: str
    review_tasks: str
    dead_letter: str

    @classmethod
    def with_prefix(cls, prefix: str = "clipwatch") -> "Topics":
        return cls(f"{prefix}.segments", f"{prefix}.predictions", f"{prefix}.review-tasks",
                   f"{prefix}.dead-letter")

    def all(self) -> tuple[str, ...]:
        return (self.segments, self.predictions, self.review_tasks, self.dead_letter)


class SegmentEvent(BaseModel):
    """A complete segment, ready to classify."""

    stream_id: str
    sequence: int  # per stream, monotonic across playlist resets (the store's key)
    uri: str  # where the endpoint reads it: s3://… or an absolute path
    source_uri: str  # as the playlist listed it
    duration: Optional[float] = None  # seconds, when the playlist says
    discontinuity: bool = False
    start_time: Optional[float] = None  # epoch of the first frame (EXT-X-PROGRAM-DATE-TIME)
    # When the segment was complete: its end per PROGRAM-DATE-TIME, else when the follower first
    # saw it listed (a muxer lists a segment once it has closed it). End-to-end lag starts here.
    ready_at: float
    published_at: float = Field(default_factory=time.time)

    def request(self) -> InvocationRequest:
        key = "s3_uri" if self.uri.startswith("s3://") else "uri"
        return InvocationRequest(**{key: self.uri}, stream_id=self.stream_id,
                                 sequence=self.sequence, start_time=self.start_time)


class DeadLetter(BaseModel):
    """A segment event no worker could process, with why; the raw value when it did not parse."""

    error_code: str
    message: str
    attempts: int
    worker: str
    event: Optional[SegmentEvent] = None
    raw: Optional[str] = None
    failed_at: float = Field(default_factory=time.time)
