"""SQLite backend: the embedded default (one file, no server). Several processes may share the
file (the endpoint writes predictions and tasks, the review app leases and labels them): WAL
mode, and read-modify-write steps run in ``BEGIN IMMEDIATE`` transactions."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

from ..records import Annotation, AuditRecord, Prediction, Presegmentation, ReviewTask

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
CREATE INDEX IF NOT EXISTS review_tasks_stream ON review_tasks (stream_id, created_at);
CREATE TABLE IF NOT EXISTS annotations (
    annotation_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    submitted_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_task ON annotations (task_id, submitted_at);
CREATE TABLE IF NOT EXISTS audits (
    audit_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audits_task ON audits (task_id, created_at);
"""


class SqliteStore:
    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- predictions ---------------------------------------------------------------------

    def put_prediction(self, p: Prediction, task: Optional[ReviewTask] = None) -> bool:
        """Idempotent, and the newest model wins: a repeated event of the same model writes
        nothing, another model's prediction replaces the stored one only when that model was
        made later (``model_created_at``). A redelivered event of an old model, after a
        redeploy, cannot bring the old label back. The DynamoDB store's condition is the same.
        A flagged prediction's task is inserted in the same transaction."""
        with self._transaction() as db:
            cur = db.execute(
                """INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (stream_id, sequence) DO UPDATE SET
                     model_version = excluded.model_version, label = excluded.label,
                     confidence = excluded.confidence, needs_review = excluded.needs_review,
                     created_at = excluded.created_at, body = excluded.body
                   WHERE predictions.model_version != excluded.model_version
                     AND COALESCE(json_extract(predictions.body, '$.model_created_at'), '')
                         < COALESCE(json_extract(excluded.body, '$.model_created_at'), '')""",
                (p.stream_id, p.sequence, p.model_version, p.label, p.confidence,
                 int(p.review.needs_review), p.created_at, p.model_dump_json(exclude={"stored"})),
            )
            if cur.rowcount == 1 and task is not None:
                _insert_task(db, task)
            return cur.rowcount == 1

    def get_prediction(self, stream_id: str, sequence: int) -> Optional[Prediction]:
        rows = self._rows("SELECT body FROM predictions WHERE stream_id = ? AND sequence = ?",
                          (stream_id, sequence))
        return Prediction.model_validate_json(rows[0][0]) if rows else None

    def timeline(self, stream_id: str, first: int | None = None,
                 last: int | None = None) -> list[Prediction]:
        lo = first if first is not None else -(1 << 62)
        hi = last if last is not None else 1 << 62
        rows = self._rows("SELECT body FROM predictions WHERE stream_id = ? AND sequence BETWEEN ? AND ? "
                          "ORDER BY sequence", (stream_id, lo, hi))
        return [Prediction.model_validate_json(r[0]) for r in rows]

    def recent(self, stream_id: str, limit: int = 20) -> list[Prediction]:
        rows = self._rows("SELECT body FROM predictions WHERE stream_id = ? ORDER BY sequence DESC "
                          "LIMIT ?", (stream_id, limit))
        return [Prediction.model_validate_json(r[0]) for r in rows]

    def streams(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT stream_id FROM predictions ORDER BY stream_id")]

    def change_prediction(self, stream_id: str, sequence: int, model_version: str,
                          change: Callable[[Prediction], None]) -> bool:
        """Apply ``change`` to the stored prediction if it is still ``model_version``'s: read and
        write in one transaction, so no concurrent change is lost."""
        with self._transaction() as db:
            row = db.execute("SELECT body FROM predictions WHERE stream_id = ? AND sequence = ? "
                             "AND model_version = ?", (stream_id, sequence, model_version)).fetchone()
            if row is None:
                return False
            p = Prediction.model_validate_json(row[0])
            change(p)
            db.execute("UPDATE predictions SET body = ? WHERE stream_id = ? AND sequence = ?",
                       (p.model_dump_json(exclude={"stored"}), stream_id, sequence))
            return True

    def record_human_label(self, stream_id: str, sequence: int, model_version: str, label: str,
                           by: str, at: str, status: str) -> bool:
        def review(p: Prediction) -> None:
            p.human_label, p.reviewed_by, p.reviewed_at, p.status = label, by, at, status

        return self.change_prediction(stream_id, sequence, model_version, review)

    def attach_presegmentation(self, stream_id: str, sequence: int, model_version: str,
                               presegmentation: Presegmentation) -> bool:
        return self.change_prediction(stream_id, sequence, model_version,
                                      lambda p: setattr(p, "presegmentation", presegmentation))

    # --- review tasks ----------------------------------------------------------------------

    def put_review_task(self, task: ReviewTask) -> bool:
        with self._lock:
            return _insert_task(self._db, task)

    def get_review_task(self, task_id: str) -> Optional[ReviewTask]:
        rows = self._rows("SELECT body FROM review_tasks WHERE task_id = ?", (task_id,))
        return ReviewTask.model_validate_json(rows[0][0]) if rows else None

    def update_review_task(self, task: ReviewTask) -> bool:
        with self._transaction() as db:
            row = db.execute("SELECT body FROM review_tasks WHERE task_id = ?",
                             (task.task_id,)).fetchone()
            if row is None or ReviewTask.model_validate_json(row[0]).revision != task.revision:
                return False
            new = task.model_copy(update={"revision": task.revision + 1})
            db.execute("UPDATE review_tasks SET status = ?, body = ? WHERE task_id = ?",
                       (new.status, new.model_dump_json(), task.task_id))
        task.revision += 1
        return True

    def review_tasks(self, status: str = "pending", limit: int = 100) -> list[ReviewTask]:
        rows = self._rows("SELECT body FROM review_tasks WHERE status = ? ORDER BY created_at LIMIT ?",
                          (status, limit))
        return [ReviewTask.model_validate_json(r[0]) for r in rows]

    def count_review_tasks(self, stream_id: str, since: str) -> int:
        return self._rows("SELECT COUNT(*) FROM review_tasks WHERE stream_id = ? AND created_at >= ?",
                          (stream_id, since))[0][0]

    # --- annotations and audits ------------------------------------------------------------

    def put_annotation(self, annotation: Annotation) -> None:
        with self._lock:
            self._db.execute("INSERT INTO annotations VALUES (?, ?, ?, ?)",
                             (annotation.annotation_id, annotation.task_id, annotation.submitted_at,
                              annotation.model_dump_json()))

    def annotations(self, task_id: str) -> list[Annotation]:
        rows = self._rows("SELECT body FROM annotations WHERE task_id = ? ORDER BY submitted_at",
                          (task_id,))
        return [Annotation.model_validate_json(r[0]) for r in rows]

    def put_audit(self, audit: AuditRecord) -> None:
        with self._lock:
            self._db.execute("INSERT INTO audits VALUES (?, ?, ?, ?)",
                             (audit.audit_id, audit.task_id, audit.created_at, audit.model_dump_json()))

    def audits(self, task_id: str) -> list[AuditRecord]:
        rows = self._rows("SELECT body FROM audits WHERE task_id = ? ORDER BY created_at", (task_id,))
        return [AuditRecord.model_validate_json(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _insert_task(db: sqlite3.Connection, task: ReviewTask) -> bool:
    """Insert a review task unless one with its id exists; True if inserted."""
    cur = db.execute("INSERT OR IGNORE INTO review_tasks VALUES (?, ?, ?, ?, ?, ?)",
                     (task.task_id, task.stream_id, task.sequence, task.status, task.created_at,
                      task.model_dump_json()))
    return cur.rowcount == 1
