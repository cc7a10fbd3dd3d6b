"""What reviewers and auditors do, over the store: take the next task (a lease), skip it,
submit labels, audit them. The web app is a thin HTTP layer over this.

Leases: taking a task writes ``lease_owner``/``lease_expires`` under the task's revision, so two
reviewers can never hold it at once; an abandoned lease simply expires. Submitting needs the
caller's own unexpired lease. A task needing N independent reviews returns to the queue after
each until N different people have labelled it; then the consensus label is written back onto
the prediction (status ``reviewed``), and an auditor's approval or adjustment makes it
``audited``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from clipwatch import metrics
from clipwatch.records import (Agreement, Annotation, AuditRecord, ClipAnswer, ReviewTask,
                               SegmentLabel, utc_now)
from clipwatch.store import PredictionStore

from .agreement import agreement, consensus
from .errors import InvalidAnnotation, LeaseConflict, TaskNotFound, WrongState
from .queue import DIVERSE_UNTIL, QueueItem, features_for, order_queue

# Free text is taken as typed ("left hand < right hand" is a description, not an attack): what
# keeps pages safe is escaping on output (autoescaped templates, textContent in the scripts, a
# script-src 'self' CSP). Only what no one types is refused: control characters, which hide
# text or break the line-based exports. Multi-line fields keep their line breaks.
_SINGLE_LINE_OK = frozenset()
_MULTI_LINE_OK = frozenset("\n\r\t")


def _unprintable(text: str, allowed: frozenset = _SINGLE_LINE_OK) -> str | None:
    """The first character of ``text`` that is neither printable nor allowed, as U+XXXX."""
    bad = next((ch for ch in text if not ch.isprintable() and ch not in allowed), None)
    return None if bad is None else f"U+{ord(bad):04X}"


MAX_SEGMENTS = 200
MAX_TRACKS = 8


class LabelsIn(BaseModel):
    """What the clip page submits (and an auditor's adjustment)."""

    model_config = ConfigDict(extra="forbid")

    tracks: list[str] = Field(default_factory=lambda: ["activity"], max_length=MAX_TRACKS)
    segments: list[SegmentLabel] = Field(default_factory=list, max_length=MAX_SEGMENTS)
    clip: ClipAnswer = Field(default_factory=ClipAnswer)


class AuditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approved", "adjusted"]
    labels: Optional[LabelsIn] = None  # required when adjusted
    comment: str = Field(default="", max_length=2000)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class ReviewService:
    store: PredictionStore
    labels: list[str]  # the activity classes a person may choose
    timing_of: Callable[[str], tuple[float, float]]  # segment URI → (seconds, fps), from the media
    lease_seconds: float = 600.0
    page_size: int = 10  # b: the budget of one sitting, the number of clusters
    clock: Callable[[], float] = time.time

    # --- the queue -------------------------------------------------------------------------

    def queue(self, limit: int = 500) -> tuple[list[QueueItem], str]:
        tasks = self.store.review_tasks("pending", limit)
        predictions = [self.store.get_prediction(t.stream_id, t.sequence) for t in tasks]
        feats, kind = features_for(predictions)
        items = [QueueItem(t, f) for t, f in zip(tasks, feats)]
        return order_queue(items, self.page_size, diverse=self._few_labels(tasks)), kind

    def _few_labels(self, pending: list) -> bool:
        """Does the model the queue is mostly for have fewer than ``DIVERSE_UNTIL`` reviewed
        labels? (``review.queue``: diversity first only until then.)"""
        if not pending:
            return True
        versions = [t.model_version for t in pending]
        version = max(set(versions), key=versions.count)
        done = sum(t.model_version == version for status in ("reviewed", "audited")
                   for t in self.store.review_tasks(status, 10 * DIVERSE_UNTIL))
        return done < DIVERSE_UNTIL

    def next_task(self, reviewer: str) -> Optional[ReviewTask]:
        """The reviewer's current lease if any, else the first free task in queue order."""
        now = self.clock()
        ordered, _ = self.queue()
        for item in ordered:
            t = item.task
            if t.lease_owner == reviewer and (t.lease_expires or 0) > now:
                return t
        for item in ordered:
            t = item.task
            if reviewer in t.reviewers or reviewer in t.skipped_by or t.leased_to_other(reviewer, now):
                continue
            leased = self._lease(t, reviewer, now)
            if leased is not None:
                return leased
        return None

    def lease(self, task_id: str, reviewer: str) -> ReviewTask:
        """Take (or renew) a lease on one task, e.g. when a reviewer opens it from the queue."""
        t = self.task(task_id)
        now = self.clock()
        if t.status != "pending":
            raise WrongState(f"task {task_id} is {t.status}, not pending")
        if reviewer in t.reviewers:
            raise WrongState(f"you have already reviewed task {task_id}; it needs a different reviewer")
        if t.leased_to_other(reviewer, now):
            raise LeaseConflict(f"task {task_id} is being reviewed by someone else "
                                f"(lease until {_iso(t.lease_expires)})")
        leased = self._lease(t, reviewer, now)
        if leased is None:
            raise LeaseConflict(f"task {task_id} was just taken by someone else")
        return leased

    def _lease(self, t: ReviewTask, reviewer: str, now: float) -> Optional[ReviewTask]:
        renew = t.lease_owner == reviewer and (t.lease_expires or 0) > now
        t.lease_owner, t.lease_expires = reviewer, now + self.lease_seconds
        if not renew:
            t.lease_taken_at = _iso(now)
        return t if self.store.update_review_task(t) else None

    def skip(self, task_id: str, reviewer: str) -> None:
        t = self._own_lease(task_id, reviewer)
        t.lease_owner, t.lease_expires = None, None
        t.skipped_by = [*t.skipped_by, reviewer]
        if not self.store.update_review_task(t):
            raise LeaseConflict(f"task {task_id} changed meanwhile; reload it")

    def task(self, task_id: str) -> ReviewTask:
        t = self.store.get_review_task(task_id)
        if t is None:
            raise TaskNotFound(f"no review task {task_id!r}")
        return t

    def _own_lease(self, task_id: str, reviewer: str) -> ReviewTask:
        t = self.task(task_id)
        if t.status != "pending":
            raise WrongState(f"task {task_id} is {t.status}; it takes no more reviews")
        if t.lease_owner != reviewer:
            raise LeaseConflict(f"task {task_id} is not leased to you; open it from the queue first")
        if (t.lease_expires or 0) <= self.clock():
            raise LeaseConflict(f"your lease on task {task_id} expired at {_iso(t.lease_expires)}; "
                                "open it again from the queue")
        return t

    # --- labels ----------------------------------------------------------------------------

    def check(self, labels: LabelsIn, segment_uri: str) -> tuple[float, float]:
        """Every rule a submission must meet; the clip's duration is the media's, not the
        browser's word. Returns the clip's (duration, fps)."""
        duration, fps = self.timing_of(segment_uri)
        known = set(self.labels)
        tracks = labels.tracks
        if len(set(tracks)) != len(tracks):
            raise InvalidAnnotation("track names must be unique")
        for name in tracks:
            bad = _unprintable(name)
            if bad or not name.strip():
                raise InvalidAnnotation(f"track name {name!r} is empty or holds a control character ({bad})"
                                        if bad else "track names must not be empty")
        seen = set()
        for s in labels.segments:
            if s.id in seen:
                raise InvalidAnnotation(f"segment id {s.id} is used twice")
            seen.add(s.id)
            if s.track not in tracks:
                raise InvalidAnnotation(f"segment {s.id} is on unknown track {s.track!r}")
            if s.label not in known:
                raise InvalidAnnotation(f"segment {s.id}: unknown label {s.label!r} "
                                        f"(allowed: {', '.join(self.labels)})")
            if s.end > duration + 0.05:  # a frame of slack for player rounding
                raise InvalidAnnotation(f"segment {s.id} ends at {s.end:.3f} s, after the clip's "
                                        f"end ({duration:.3f} s)")
            bad = _unprintable(s.text, _MULTI_LINE_OK)
            if bad:
                raise InvalidAnnotation(f"segment {s.id}: text holds a control character ({bad})")
        if labels.clip.label is not None and labels.clip.label not in known:
            raise InvalidAnnotation(f"clip label {labels.clip.label!r} is not one of "
                                    f"{', '.join(self.labels)}")
        bad = _unprintable(labels.clip.notes, _MULTI_LINE_OK)
        if bad:
            raise InvalidAnnotation(f"notes hold a control character ({bad})")
        if not labels.segments and labels.clip.label is None:
            raise InvalidAnnotation("label at least one segment or the whole clip")
        return duration, fps

    def _annotation(self, t: ReviewTask, author: str, role: str, labels: LabelsIn,
                    timing: tuple[float, float], accepted_at: str) -> Annotation:
        return Annotation(annotation_id=uuid.uuid4().hex, task_id=t.task_id, stream_id=t.stream_id,
                          sequence=t.sequence, segment_uri=t.segment_uri, author=author, role=role,
                          tracks=labels.tracks, segments=labels.segments, clip=labels.clip,
                          clip_duration=timing[0], clip_fps=timing[1], accepted_at=accepted_at,
                          submitted_at=_iso(self.clock()))

    def submit(self, task_id: str, reviewer: str, labels: LabelsIn) -> ReviewTask:
        t = self._own_lease(task_id, reviewer)
        timing = self.check(labels, t.segment_uri)
        ann = self._annotation(t, reviewer, "reviewer", labels, timing,
                               t.lease_taken_at or _iso(self.clock()))
        # The annotation is written first but counts only once the task names it: if the task
        # write loses a race, the stray annotation is never exported or shown.
        self.store.put_annotation(ann)
        t.annotation_ids = [*t.annotation_ids, ann.annotation_id]
        t.reviewers = [*t.reviewers, reviewer]
        t.lease_owner, t.lease_expires = None, None
        if len(set(t.reviewers)) >= t.reviews_required:
            chosen, label, summary = consensus(self.annotations(t))
            t.status, t.consensus_annotation_id, t.human_label = "reviewed", chosen.annotation_id, label
            t.consensus = summary
        if not self.store.update_review_task(t):
            raise LeaseConflict(f"task {task_id} changed while you labelled it; nothing was saved")
        metrics.REVIEW_ANNOTATIONS.labels("reviewer").inc()
        if t.status == "reviewed" and t.human_label:
            self.store.record_human_label(t.stream_id, t.sequence, t.model_version, t.human_label,
                                          reviewer if t.reviews_required == 1 else "consensus",
                                          ann.submitted_at, "reviewed")
        return t

    def annotations(self, t: ReviewTask) -> list[Annotation]:
        """The task's counted annotations, in submission order."""
        by_id = {a.annotation_id: a for a in self.store.annotations(t.task_id)}
        return [by_id[i] for i in t.annotation_ids if i in by_id]

    # --- audit -----------------------------------------------------------------------------

    def audit(self, task_id: str, auditor: str, req: AuditIn) -> AuditRecord:
        t = self.task(task_id)
        if t.status != "reviewed":
            raise WrongState(f"task {task_id} is {t.status}; only reviewed tasks can be audited")
        if auditor in t.reviewers:
            raise WrongState("an auditor cannot audit a task they reviewed")
        reviewed = next((a for a in self.annotations(t)
                         if a.annotation_id == t.consensus_annotation_id), None)
        if reviewed is None:
            raise WrongState(f"task {task_id} has no consensus annotation to audit")
        adjusted: Optional[Annotation] = None
        if req.decision == "adjusted":
            if req.labels is None:
                raise InvalidAnnotation("an adjustment needs the corrected labels")
            timing = self.check(req.labels, t.segment_uri)
            adjusted = self._annotation(t, auditor, "auditor", req.labels, timing, utc_now())
        bad = _unprintable(req.comment, _MULTI_LINE_OK)
        if bad:
            raise InvalidAnnotation(f"comment holds a control character ({bad})")
        ag = agreement(reviewed, adjusted) if adjusted else Agreement(
            segment_iou=1.0, label_iou=1.0, clip_label_agree=True)
        record = AuditRecord(audit_id=uuid.uuid4().hex, task_id=task_id, auditor=auditor,
                             decision=req.decision, reviewed_annotation_id=reviewed.annotation_id,
                             audit_annotation_id=adjusted.annotation_id if adjusted else None,
                             agreement=ag, comment=req.comment, created_at=_iso(self.clock()))
        # As with submissions: records first, then the task that makes them count.
        if adjusted:
            self.store.put_annotation(adjusted)
            t.annotation_ids = [*t.annotation_ids, adjusted.annotation_id]
            t.consensus_annotation_id = adjusted.annotation_id
            t.human_label = adjusted.clip_label() or t.human_label
        self.store.put_audit(record)
        t.status = "audited"
        t.audit_id = record.audit_id
        if not self.store.update_review_task(t):
            raise LeaseConflict(f"task {task_id} changed meanwhile; nothing was saved")
        metrics.REVIEW_ANNOTATIONS.labels("auditor").inc()
        metrics.REVIEW_AGREEMENT.observe(ag.label_iou)
        if t.human_label:
            self.store.record_human_label(t.stream_id, t.sequence, t.model_version, t.human_label,
                                          auditor, record.created_at, "audited")
        return record
