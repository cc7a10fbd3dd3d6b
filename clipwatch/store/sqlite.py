"""SQLite backend: the embedded default (one file, no server)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Optional

from ..records import Prediction, ReviewTask

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    stream_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    needs_review INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (stream_id, sequence)
);
CREATE TABLE IF NOT EXISTS review_tasks (
    task_id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS review_tasks_status ON review_tasks (status, created_at);
"""


class SqliteStore:
    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def put_prediction(self, p: Prediction) -> bool:
        with self._lock:
            cur = self._db.execute(
                """INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (stream_id, sequence) DO UPDATE SET
                     model_version = excluded.model_version, label = excluded.label,
                     confidence = excluded.confidence, needs_review = excluded.needs_review,
                     created_at = excluded.created_at, body = excluded.body
                   WHERE predictions.model_version != excluded.model_version""",
                (p.stream_id, p.sequence, p.model_version, p.label, p.confidence,
                 int(p.review.needs_review), p.created_at, p.model_dump_json(exclude={"stored"})),
            )
            return cur.rowcount == 1

    def get_prediction(self, stream_id: str, sequence: int) -> Optional[Prediction]:
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM predictions WHERE stream_id = ? AND sequence = ?",
                (stream_id, sequence)).fetchone()
        return Prediction.model_validate_json(row[0]) if row else None

    def timeline(self, stream_id: str, first: int | None = None,
                 last: int | None = None) -> list[Prediction]:
        lo = first if first is not None else -(1 << 62)
        hi = last if last is not None else 1 << 62
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM predictions WHERE stream_id = ? AND sequence BETWEEN ? AND ? "
                "ORDER BY sequence", (stream_id, lo, hi)).fetchall()
        return [Prediction.model_validate_json(r[0]) for r in rows]

    def put_review_task(self, task: ReviewTask) -> bool:
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO review_tasks VALUES (?, ?, ?, ?, ?, ?)",
                (task.task_id, task.stream_id, task.sequence, task.status, task.created_at,
                 task.model_dump_json()))
            return cur.rowcount == 1

    def review_tasks(self, status: str = "pending", limit: int = 100) -> list[ReviewTask]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM review_tasks WHERE status = ? ORDER BY created_at LIMIT ?",
                (status, limit)).fetchall()
        return [ReviewTask.model_validate_json(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
