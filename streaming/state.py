"""Where each followed stream stands, persisted so a restarted follower emits nothing twice and
misses nothing still listed. One SQLite file; a row per stream.

Besides the position, the state keeps what the last ``RECENT`` handled entries were listed as
(media sequence → URI): that is how a playlist whose media sequence went backwards is told
apart — a stale copy from a CDN lists what we handled at those numbers, a restarted encoder
lists something else. Kept in memory only, a restarted follower meeting a stale copy would take
it for an encoder restart and emit its segments again under new sequence numbers.

The same file holds the **outbox**: the events of segments already kept (spool or S3) but not
yet on the bus. A segment's event and the stream's new position are written in one
transaction, so the follower can go on downloading while the bus is down, and a restart
publishes what was pending, in order, before anything new.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

RECENT = 256  # entries remembered per stream: more than any playlist window lists


@dataclass
class StreamState:
    stream_id: str
    last_sequence: int = -1  # the stream sequence of the last segment handled (emitted or given up)
    # stream sequence = playlist media sequence + offset; the offset grows at each playlist
    # reset, so a restarted encoder's segment 0 never collides with an older segment's key.
    offset: int = 0
    last_media_sequence: int = -1
    recent: dict[int, str] = field(default_factory=dict)  # media sequence → listed URI, handled lately

    def remember(self, media_sequence: int, listed_uri: str) -> None:
        self.recent[media_sequence] = listed_uri
        while len(self.recent) > RECENT:
            del self.recent[min(self.recent)]


class StateStore:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("""CREATE TABLE IF NOT EXISTS streams (
            stream_id TEXT PRIMARY KEY, last_sequence INTEGER NOT NULL, offset INTEGER NOT NULL,
            last_media_sequence INTEGER NOT NULL)""")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(streams)")}
        if "recent" not in columns:  # a state file written before the column existed
            self._db.execute("ALTER TABLE streams ADD COLUMN recent TEXT NOT NULL DEFAULT '{}'")
        self._db.execute("""CREATE TABLE IF NOT EXISTS outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL, event TEXT NOT NULL)""")
        self._lock = threading.Lock()

    def load(self, stream_id: str) -> StreamState:
        with self._lock:
            row = self._db.execute("SELECT last_sequence, offset, last_media_sequence, recent FROM streams "
                                   "WHERE stream_id = ?", (stream_id,)).fetchone()
        if not row:
            return StreamState(stream_id)
        recent = {int(k): v for k, v in json.loads(row[3]).items()}
        return StreamState(stream_id, row[0], row[1], row[2], recent)

    def save(self, s: StreamState, event: str | None = None) -> None:
        """The stream's position, and with it (same transaction) the event to publish."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT OR REPLACE INTO streams (stream_id, last_sequence, offset, "
                                 "last_media_sequence, recent) VALUES (?, ?, ?, ?, ?)",
                                 (s.stream_id, s.last_sequence, s.offset, s.last_media_sequence,
                                  json.dumps(s.recent)))
                if event is not None:
                    self._db.execute("INSERT INTO outbox (stream_id, event) VALUES (?, ?)", (s.stream_id, event))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def pending(self, stream_id: str, limit: int = 100) -> list[tuple[int, str]]:
        """Events kept but not yet published, oldest first: (outbox id, event JSON)."""
        with self._lock:
            return self._db.execute("SELECT id, event FROM outbox WHERE stream_id = ? ORDER BY id LIMIT ?",
                                    (stream_id, limit)).fetchall()

    def pending_count(self, stream_id: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox WHERE stream_id = ?", (stream_id,)).fetchone()[0]

    def published(self, outbox_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (outbox_id,))

    def close(self) -> None:
        self._db.close()
