"""The store interface. Writes are idempotent: the key is (stream_id, sequence) and a repeated
event for the same segment and model version writes nothing, so at-least-once triggers (S3
events, Kafka redeliveries, Lambda retries) cannot count a segment twice. A new model version
re-predicting a segment replaces the old prediction.

Review tasks change under optimistic concurrency: ``update_review_task`` writes only when the
stored ``revision`` is still the one the caller read, so leases and submissions from several
reviewers (several app processes, even) never overwrite each other."""

from __future__ import annotations

from typing import Callable, Optional, Protocol

from ..records import Annotation, AuditRecord, Prediction, Presegmentation, ReviewTask


class PredictionStore(Protocol):
    def put_prediction(self, prediction: Prediction, task: Optional[ReviewTask] = None) -> bool:
        """Write unless this segment holds a prediction of this model or a newer one; True if
        written. ``task`` (a flagged prediction's review task) is written in the same
        transaction: both or neither, whatever fails in between."""

    def get_prediction(self, stream_id: str, sequence: int) -> Optional[Prediction]: ...

    def timeline(self, stream_id: str, first: int | None = None,
                 last: int | None = None) -> list[Prediction]:
        """A stream's predictions in sequence order (one range query)."""

    def recent(self, stream_id: str, limit: int = 20) -> list[Prediction]:
        """A stream's newest predictions, newest first."""

    def streams(self) -> list[str]: ...

    def change_prediction(self, stream_id: str, sequence: int, model_version: str,
                          change: Callable[[Prediction], None]) -> bool:
        """Apply ``change`` to the stored prediction if it is still ``model_version``'s, without
        losing a concurrent change to it (one transaction, or a conditional write)."""

    def record_human_label(self, stream_id: str, sequence: int, model_version: str, label: str,
                           by: str, at: str, status: str) -> bool:
        """Write a reviewed label back onto the prediction (if it is still that model version's)."""

    def attach_presegmentation(self, stream_id: str, sequence: int, model_version: str,
                               presegmentation: Presegmentation) -> bool:
        """Add the model's proposed segments to a stored prediction (if it is still that model
        version's), without losing a concurrent change to it."""

    def put_review_task(self, task: ReviewTask) -> bool:
        """Create the task unless it exists; True if created."""

    def get_review_task(self, task_id: str) -> Optional[ReviewTask]: ...

    def update_review_task(self, task: ReviewTask) -> bool:
        """Write ``task`` if the stored revision equals ``task.revision`` (then bump it)."""

    def review_tasks(self, status: str = "pending", limit: int = 100) -> list[ReviewTask]: ...

    def count_review_tasks(self, stream_id: str, since: str) -> int:
        """Tasks created for a stream at or after ``since`` (ISO 8601 UTC): the review budget."""

    def put_annotation(self, annotation: Annotation) -> None: ...

    def annotations(self, task_id: str) -> list[Annotation]: ...

    def put_audit(self, audit: AuditRecord) -> None: ...

    def audits(self, task_id: str) -> list[AuditRecord]: ...

    def close(self) -> None: ...


def save_prediction(store: PredictionStore, prediction: Prediction) -> Optional[ReviewTask]:
    """Write a prediction and, when the policy flagged it, its review task. Returns the task
    created (None when not flagged or when this was a repeated event)."""
    task = ReviewTask.for_prediction(prediction) if prediction.review.needs_review else None
    prediction.stored = store.put_prediction(prediction, task)
    return task if prediction.stored else None


def flag_for_review(store: PredictionStore, p: Prediction, kind: str, reason: str) -> Optional[ReviewTask]:
    """Send a stored, auto-accepted prediction to review after the fact (the temporal signal is
    known only once the next segment is in). Returns the task created, or None when the
    prediction was already routed or has been replaced by another model's. The prediction is
    changed first: a task for a prediction that says "auto-accepted" would confuse the review."""
    flagged: list[Prediction] = []

    def flag(stored: Prediction) -> None:
        if not stored.review.needs_review:
            stored.review.needs_review, stored.review.kind = True, kind
            stored.review.reasons.append(reason)
            flagged.append(stored)

    if not store.change_prediction(p.stream_id, p.sequence, p.model_version, flag) or not flagged:
        return None
    task = ReviewTask.for_prediction(flagged[-1])  # a conditional write may retry: the last is stored
    return task if store.put_review_task(task) else None
