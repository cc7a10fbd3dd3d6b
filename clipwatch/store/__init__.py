"""Prediction and review-task stores: one interface, two backends.

``sqlite:///path.db`` is the embedded default; ``dynamodb://<prefix>`` uses the tables
``<prefix>-predictions`` and ``<prefix>-review-tasks`` (boto3 honours AWS_ENDPOINT_URL_DYNAMODB).
"""

from __future__ import annotations

from urllib.parse import urlparse

from .base import PredictionStore, flag_for_review, save_prediction


def open_store(url: str) -> PredictionStore:
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        from .sqlite import SqliteStore

        # sqlite:///relative.db and sqlite:////absolute.db, as in SQLAlchemy URLs
        return SqliteStore(parsed.path[1:] if parsed.path.startswith("/") else parsed.path)
    if parsed.scheme == "dynamodb":
        from .dynamodb import DynamoStore

        return DynamoStore(prefix=parsed.netloc or "clipwatch")
    raise ValueError(f"unknown store URL {url!r}: use sqlite:///path.db or dynamodb://prefix")


__all__ = ["PredictionStore", "flag_for_review", "open_store", "save_prediction"]
