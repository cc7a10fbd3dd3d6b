"""Where each followed stream stands, persisted so a restarted follower emits nothing twice and
misses nothing still listed. One SQLite file; a row per stream.

Besides the position, the state keeps what the last ``RECENT`` handled entries were listed as
(media sequence → URI): that is how a playlist whose media sequence went backwards is told
apart — a stale copy from a CDN lists what we handled at those numbers, a restarted encoder
lists something else. Kept in memory only, a restarted follower meeting a stale copy would take
it for an encoder restart and emit its segments again under new sequence numbers.
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
        self._lock = threading.Lock()

    def load(self, stream_id: str) -> StreamState:
        with self._lock:
            row = self._db.execute("SELECT last_sequence, offset, last_media_sequence, recent FROM streams "
                                   "WHERE stream_id = ?", (stream_id,)).fetchone()
        if not row:
            return StreamState(stream_id)
        recent = {int(k): v for k, v in json.loads(row[3]).items()}
        return StreamState(stream_id, row[0], row[1], row[2], recent)

    def save(self, s: StreamState) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO streams (stream_id, last_sequence, offset, "
                             "last_media_sequence, recent) VALUES (?, ?, ?, ?, ?)",
                             (s.stream_id, s.last_sequence, s.offset, s.last_media_sequence,
                              json.dumps(s.recent)))

    def close(self) -> None:
        self._db.close()
