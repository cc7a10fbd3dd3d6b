"""Where each followed stream stands, persisted so a restarted follower emits nothing twice and
misses nothing still listed. One SQLite file; a row per stream."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass
class StreamState:
    stream_id: str
    last_sequence: int = -1  # the stream sequence of the last segment handled (emitted or given up)
    # stream sequence = playlist media sequence + offset; the offset grows at each playlist
    # reset, so a restarted encoder's segment 0 never collides with an older segment's key.
    offset: int = 0
    last_media_sequence: int = -1


class StateStore:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("""CREATE TABLE IF NOT EXISTS streams (
            stream_id TEXT PRIMARY KEY, last_sequence INTEGER NOT NULL, offset INTEGER NOT NULL,
            last_media_sequence INTEGER NOT NULL)""")
        self._lock = threading.Lock()

    def load(self, stream_id: str) -> StreamState:
        with self._lock:
            row = self._db.execute("SELECT last_sequence, offset, last_media_sequence FROM streams "
                                   "WHERE stream_id = ?", (stream_id,)).fetchone()
        return StreamState(stream_id, *row) if row else StreamState(stream_id)

    def save(self, s: StreamState) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO streams VALUES (?, ?, ?, ?)",
                             (s.stream_id, s.last_sequence, s.offset, s.last_media_sequence))

    def close(self) -> None:
        self._db.close()
