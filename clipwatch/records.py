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
# The stores' key range: SQLite's INTEGER is a signed 64-bit number (DynamoDB's N holds more).
MAX_SEQUENCE = 2**63 - 1
# Epoch seconds up to the year 5000: a start time past it is a unit mistake (ms, µs), not a time.
MAX_EPOCH_S = 95_617_584_000.0


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
            if sequence > MAX_SEQUENCE:
                raise InvalidRequest(f"the number in the segment's name ({m.group(1)[:40]}) is beyond "
                                     f"the store's range (at most {MAX_SEQUENCE}): pass 'sequence'")
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
    MODEL_MAX_FRAMES: Optional[int] = Field(default=None, ge=1, le=100_000)
    DETECTION_TABLE_NAME: Optional[str] = Field(default=None, max_length=255)
    stream_id: Optional[str] = Field(default=None, min_length=1, max_length=256)
    sequence: Optional[int] = Field(default=None, ge=0, le=MAX_SEQUENCE)
    start_time: Optional[float] = Field(default=None, ge=0, le=MAX_EPOCH_S, allow_inf_nan=False)

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
    """The routing policy's verdict, with every reason it gave (thresholds crossed, a random
    audit sample of a confident prediction, or a review skipped because the budget was spent)."""

    needs_review: bool
    reasons: list[str] = Field(default_factory=list)
    # "uncertain" | "sample" | "temporal" (routed late: both neighbours contradict it) when
    # routed to a human, else None
    kind: Optional[str] = None
    # the queue's first key: the review score (probability the model is wrong) where the model
    # has a fitted one (inference.routing), else 1 − calibrated confidence
    uncertainty: Optional[float] = None
    score: Optional[float] = None  # the review score, where the model has one
    budget_per_hour: Optional[int] = None  # tasks per stream per hour in force (None: no cap)
    reviews_required: int = 1  # independent reviews before consensus


class RoutingSignals(BaseModel):
    """What the endpoint measured beside the prediction, for routing (inference.signals)."""

    novelty: Optional[float] = None  # None: the model has no reference bank
    class_novelty: Optional[float] = None
    evidence: float = 0.0  # log-sum-exp of the calibrated logits: low when nothing known is there
    motion: float = 0.0
    disagreement: Optional[float] = None  # None: the first clip was sure enough
    second_clip_label: Optional[str] = None


class WindowScore(BaseModel):
    """The model's answer for one window of the segment (seconds from the segment's start)."""

    start: float
    end: float
    label: str
    confidence: float


class ProposedSegment(BaseModel):
    """A stretch the model labels one way: offered on the reviewer's timeline to accept, adjust
    or delete, and to Label Studio as a prediction."""

    start: float
    end: float
    label: str
    confidence: float  # mean probability of ``label`` over the windows it covers


class Presegmentation(BaseModel):
    """Where the model thinks activities start and stop in a segment (inference.presegment)."""

    windows: list[WindowScore] = Field(default_factory=list)
    proposals: list[ProposedSegment] = Field(default_factory=list)
    note: str = ""  # why there are none, when there are none


class Prediction(BaseModel):
    """What the endpoint answers and the store keeps, keyed by (stream_id, sequence)."""

    stream_id: str
    sequence: int
    segment_uri: str
    start_time: Optional[float] = None
    model_version: str
    # When that model was made (its model.json's created_at): of two models' predictions for
    # one segment the store keeps the newer model's, whatever order the events come in.
    model_created_at: Optional[str] = None
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
    signals: Optional[RoutingSignals] = None
    # For segments routed to review: the model's labels over sliding windows, as proposals.
    presegmentation: Optional[Presegmentation] = None
    created_at: str = Field(default_factory=utc_now)
    stored: Optional[bool] = None  # did this invocation write it (False: a repeated event)
    # Written back by the review tool: "predicted" → "reviewed" (a person labelled it) →
    # "audited" (an auditor approved or adjusted that label).
    status: str = "predicted"
    human_label: Optional[str] = None
    reviewed_by: Optional[str] = None
    reviewed_at: Optional[str] = None


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
    # pending → (N reviews) → reviewed → audited; "skipped" is never a status: a skip only
    # releases the lease.
    status: str = "pending"
    created_at: str = Field(default_factory=utc_now)
    kind: str = "uncertain"  # or "sample": a confident prediction drawn to measure accuracy
    uncertainty: float = 0.0  # 1 - calibrated confidence
    margin: float = 0.0
    reviews_required: int = 1  # independent reviews before consensus
    reviewers: list[str] = Field(default_factory=list)  # who has submitted, in order
    lease_owner: Optional[str] = None
    lease_expires: Optional[float] = None  # epoch seconds; an expired lease is free to take
    lease_taken_at: Optional[str] = None  # when the current lease began (acceptance time)
    skipped_by: list[str] = Field(default_factory=list)
    annotation_ids: list[str] = Field(default_factory=list)  # the annotations that count
    consensus_annotation_id: Optional[str] = None
    consensus: dict = Field(default_factory=dict)  # agreement summary over the reviews
    human_label: Optional[str] = None
    audit_id: Optional[str] = None
    # Optimistic concurrency: every write of a task checks and bumps it, so two reviewers (or
    # a reviewer and an auditor) never overwrite each other's change.
    revision: int = 0

    @classmethod
    def for_prediction(cls, p: Prediction, reviews_required: int = 1) -> "ReviewTask":
        return cls(task_id=f"{p.stream_id}#{p.sequence}#{p.model_version}", stream_id=p.stream_id,
                   sequence=p.sequence, segment_uri=p.segment_uri, model_version=p.model_version,
                   label=p.label, confidence=p.confidence, reasons=p.review.reasons,
                   kind=p.review.kind or "uncertain", margin=p.margin,
                   uncertainty=(p.review.uncertainty if p.review.uncertainty is not None
                                else 1.0 - p.confidence),
                   reviews_required=max(reviews_required, p.review.reviews_required))

    def leased_to_other(self, reviewer: str, now: float) -> bool:
        return (self.lease_owner is not None and self.lease_owner != reviewer
                and (self.lease_expires or 0) > now)


# --- What people say about a segment -----------------------------------------------------------

QUALITY_FLAGS = ("occluded", "blurry", "dark", "partial", "ambiguous", "camera_moving")


class SegmentLabel(BaseModel):
    """One labelled stretch of a clip on one track (times in seconds from the clip's start)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    track: str = Field(min_length=1, max_length=64)
    start: float = Field(ge=0, le=86_400, allow_inf_nan=False)  # a segment is seconds long, not days
    end: float = Field(ge=0, le=86_400, allow_inf_nan=False)
    label: str = Field(min_length=1, max_length=64)
    text: str = Field(default="", max_length=2000)
    quality: list[str] = Field(default_factory=list, max_length=len(QUALITY_FLAGS))

    @model_validator(mode="after")
    def _ordered(self) -> "SegmentLabel":
        if self.end <= self.start:
            raise ValueError(f"segment {self.id}: end {self.end} must be after start {self.start}")
        unknown = set(self.quality) - set(QUALITY_FLAGS)
        if unknown:
            raise ValueError(f"segment {self.id}: unknown quality flags {sorted(unknown)} "
                             f"(allowed: {', '.join(QUALITY_FLAGS)})")
        return self


class ClipAnswer(BaseModel):
    """The whole-clip fields of a review."""

    model_config = ConfigDict(extra="forbid")

    label: Optional[str] = Field(default=None, max_length=64)  # the clip's activity
    model_correct: Optional[bool] = None
    rating: Optional[int] = Field(default=None, ge=1, le=5)  # how good is this clip to learn from
    notes: str = Field(default="", max_length=4000)


class Annotation(BaseModel):
    """One person's labels for one review task: segments on tracks plus whole-clip answers.
    An auditor's adjustment is an Annotation too (role "auditor")."""

    annotation_id: str
    task_id: str
    stream_id: str
    sequence: int
    segment_uri: str
    author: str
    role: str = "reviewer"  # or "auditor"
    tracks: list[str] = Field(default_factory=list)
    segments: list[SegmentLabel] = Field(default_factory=list)
    clip: ClipAnswer = Field(default_factory=ClipAnswer)
    clip_duration: float = 0.0
    clip_fps: float = 0.0
    accepted_at: str  # when the lease was taken (Ground Truth's acceptanceTime)
    submitted_at: str = Field(default_factory=utc_now)

    def clip_label(self) -> Optional[str]:
        """The whole clip's activity: the explicit answer, else the label covering most time."""
        if self.clip.label:
            return self.clip.label
        cover: dict[str, float] = {}
        for s in self.segments:
            cover[s.label] = cover.get(s.label, 0.0) + (s.end - s.start)
        return max(cover, key=cover.get) if cover else None


class Agreement(BaseModel):
    """How far two annotations agree: temporal IoU of the labelled time ignoring labels, the
    same per label, and whether the whole-clip labels match."""

    segment_iou: float
    label_iou: float
    clip_label_agree: bool


class AuditRecord(BaseModel):
    audit_id: str
    task_id: str
    auditor: str
    decision: str  # "approved" | "adjusted"
    reviewed_annotation_id: str
    audit_annotation_id: Optional[str] = None  # the adjusted labels, when adjusted
    agreement: Agreement
    comment: str = ""
    created_at: str = Field(default_factory=utc_now)
