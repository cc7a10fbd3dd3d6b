"""The records that travel the data path: segment → request → prediction → review task.

Every component (endpoint, stores, Lambda payloads, workers, review) speaks these models, so
their JSON forms are the wire contracts named in DESIGN.md.
"""

from __future__ import annotations

import re
import zlib
from datetime import datetime, timezone
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InvalidRequest

_TRAILING_DIGITS = re.compile(r"(\d+)(?!.*\d)")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class SegmentRef(BaseModel):
    """One HLS segment: where it lives and where it sits in its stream's timeline."""

    uri: str
    stream_id: str
    sequence: int
    start_time: Optional[float] = None  # epoch seconds of the segment's first frame, if known

    @classmethod
    def from_uri(cls, uri: str, stream_id: str | None = None, sequence: int | None = None,
                 start_time: float | None = None) -> "SegmentRef":
        """Fill in what the caller left out. HLS encoders name segments with a running number
        (MediaLive: ``channel_00042.ts``, ffmpeg: ``seg42.ts``), so the stream is the segment's
        folder and the sequence is the file name's last number; a name without digits gets a
        stable CRC of the name, so a repeated event still maps to the same key."""
        folder, _, name = uri.rpartition("/")
        if stream_id is None:
            stream_id = folder or "default"
        if sequence is None:
            m = _TRAILING_DIGITS.search(name)
            sequence = int(m.group(1)) if m else zlib.crc32(name.encode())
        return cls(uri=uri, stream_id=stream_id, sequence=sequence, start_time=start_time)


class InvocationRequest(BaseModel):
    """Body of ``POST /invocations``. Exactly one of ``s3_uri``, ``uri`` or the seed sample's
    ``S3_VIDEO_PATH`` names the segment. ``MODEL_MAX_FRAMES`` and ``DETECTION_TABLE_NAME`` are
    accepted so the seed's Lambda works unchanged; the model directory's input spec and the
    server's store configuration decide (a caller does not pick the table it writes)."""

    model_config = ConfigDict(extra="forbid")

    s3_uri: Optional[str] = None
    uri: Optional[str] = None
    S3_VIDEO_PATH: Optional[str] = None
    MODEL_MAX_FRAMES: Optional[int] = Field(default=None, ge=1)
    DETECTION_TABLE_NAME: Optional[str] = None
    stream_id: Optional[str] = Field(default=None, min_length=1, max_length=256)
    sequence: Optional[int] = Field(default=None, ge=0)
    start_time: Optional[float] = None

    @model_validator(mode="after")
    def _one_location(self) -> "InvocationRequest":
        given = [u for u in (self.s3_uri, self.uri, self.S3_VIDEO_PATH) if u]
        if len(given) != 1:
            raise ValueError("give exactly one of 's3_uri', 'uri' or 'S3_VIDEO_PATH'")
        return self

    @property
    def location(self) -> str:
        return self.s3_uri or self.uri or self.S3_VIDEO_PATH  # type: ignore[return-value]

    def segment(self) -> SegmentRef:
        return SegmentRef.from_uri(self.location, self.stream_id, self.sequence, self.start_time)

    @classmethod
    def parse(cls, body: bytes | str) -> "InvocationRequest":
        """Parse a JSON body, turning every problem into one readable InvalidRequest."""
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidRequest(f"invalid request body: {problems}") from None


class LabelScore(BaseModel):
    label: str
    probability: float


class ReviewDecision(BaseModel):
    needs_review: bool
    reasons: list[str] = Field(default_factory=list)


class Prediction(BaseModel):
    """What the endpoint answers and the store keeps, keyed by (stream_id, sequence)."""

    stream_id: str
    sequence: int
    segment_uri: str
    start_time: Optional[float] = None
    model_version: str
    label: str
    confidence: float  # calibrated top-1 probability
    margin: float  # top-1 minus top-2 probability
    entropy: float  # of the full distribution, in nats
    top_k: list[LabelScore]
    frames: list[list[int]]  # the frame indices of each sampled clip
    device: str
    timings_ms: dict[str, float]
    review: ReviewDecision
    # The clip embedding (the classifier's input, averaged over clips, L2-normalised): the review
    # queue clusters uncertain segments on it so reviewers see diverse clips first.
    embedding: Optional[list[float]] = None
    created_at: str = Field(default_factory=utc_now)
    stored: Optional[bool] = None  # did this invocation write it (False: a repeated event)


class ReviewTask(BaseModel):
    """A low-confidence segment waiting for a human; one per (stream, sequence, model)."""

    task_id: str
    stream_id: str
    sequence: int
    segment_uri: str
    model_version: str
    label: str
    confidence: float
    reasons: list[str]
    status: str = "pending"
    created_at: str = Field(default_factory=utc_now)

    @classmethod
    def for_prediction(cls, p: Prediction) -> "ReviewTask":
        return cls(task_id=f"{p.stream_id}#{p.sequence}#{p.model_version}", stream_id=p.stream_id,
                   sequence=p.sequence, segment_uri=p.segment_uri, model_version=p.model_version,
                   label=p.label, confidence=p.confidence, reasons=p.review.reasons)
