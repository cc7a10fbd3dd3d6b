"""The store interface. Writes are idempotent: the key is (stream_id, sequence) and a repeated
event for the same segment and model version writes nothing, so at-least-once triggers (S3
events, Kafka redeliveries, Lambda retries) cannot count a segment twice. A new model version
re-predicting a segment replaces the old prediction."""

from __future__ import annotations

from typing import Optional, Protocol

from ..records import Prediction, ReviewTask


class PredictionStore(Protocol):
    def put_prediction(self, prediction: Prediction) -> bool:
        """Write unless the same segment and model version is stored; True if written."""

    def get_prediction(self, stream_id: str, sequence: int) -> Optional[Prediction]: ...

    def timeline(self, stream_id: str, first: int | None = None,
                 last: int | None = None) -> list[Prediction]:
        """A stream's predictions in sequence order (one range query)."""

    def put_review_task(self, task: ReviewTask) -> bool:
        """Create the task unless it exists; True if created."""

    def review_tasks(self, status: str = "pending", limit: int = 100) -> list[ReviewTask]: ...

    def close(self) -> None: ...


def save_prediction(store: PredictionStore, prediction: Prediction) -> Optional[ReviewTask]:
    """Write a prediction and, when the policy flagged it, its review task. Returns the task
    created (None when not flagged or when this was a repeated event)."""
    prediction.stored = store.put_prediction(prediction)
    if prediction.stored and prediction.review.needs_review:
        task = ReviewTask.for_prediction(prediction)
        if store.put_review_task(task):
            return task
    return None
