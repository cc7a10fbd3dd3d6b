"""The HLS follower: reload a live playlist, paced by its target duration, and emit every new
segment exactly once per stream, in order, also across restarts.

Each reload is compared with the persisted ``StreamState``:
- new entries (media sequence above the last handled) are downloaded and kept by the sink; then
  the segment's event goes into the outbox in the same transaction that records it handled
  (``StateStore.save``), and a publisher thread moves outbox events onto the bus in order. So a
  bus that is down or slow never stops the downloads — the encoder's sliding window would
  otherwise delete segments nobody read — and a crash re-publishes at most the event in hand
  (harmless: the store is idempotent) and never skips one. The outbox is bounded (``max_pending``):
  full, downloading pauses, logged and counted;
- entries that slid out of the window before we saw them are counted as ``missed``;
- a media sequence that goes backwards is a stale copy of the playlist when its entries match
  what we handled at those sequence numbers, otherwise an encoder restart (a reset): the
  stream's sequence continues from where it was, so old and new segments never share a key;
- ENDLIST ends the stream once its last entries are handled; no new segment for ``stall_after``
  target durations marks it stalled (logged once, counted) until one arrives.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from clipwatch import metrics

from .assemble import SegmentAssembler
from .events import SegmentEvent
from .playlist import MediaPlaylist, choose_variant, parse
from .sinks import SegmentSink
from .sources import Fetcher, FetchError
from .state import StateStore

log = logging.getLogger("clipwatch.follower")


def default_stream_id(source: str) -> str:
    """The playlist's folder, the same convention the endpoint uses for a bare segment URI."""
    folder = source.rstrip("/").rpartition("/")[0]
    return folder or "default"


class Follower:
    def __init__(self, source: str, publish: Callable[[SegmentEvent], None], sink: SegmentSink,
                 state: StateStore, *, stream_id: str | None = None, variant: str = "auto",
                 poll_interval: float | None = None, stall_after: float = 3.0,
                 download_attempts: int = 3, fetcher: Fetcher | None = None,
                 max_pending: int = 1000, clock: Callable[[], float] = time.time):
        if "://" not in source:  # a local path: absolute, so the stream id names its folder
            source = str(Path(source).resolve())
        self.source, self.publish, self.sink, self.states = source, publish, sink, state
        self.stream_id = stream_id or default_stream_id(source)
        self.variant, self.poll_interval, self.stall_after = variant, poll_interval, stall_after
        self.download_attempts, self.max_pending = download_attempts, max_pending
        self.fetcher = fetcher or Fetcher()
        self.assembler = SegmentAssembler(self.fetcher)
        self.clock = clock
        self.state = state.load(self.stream_id)
        self.media_location: str | None = None
        self.target_duration = 10.0
        self.ended = self.stalled = False
        self.emitted = 0
        self.last_new_at = clock()
        self._download_failures: dict[int, int] = {}
        self._problems: dict[str, str | None] = {}  # "playlist" / "bus" → the problem going on
        self._outbox_full = False
        self._kept = threading.Event()  # wakes the publisher when an event was kept

    # -- one reload ---------------------------------------------------------------------------

    def reload(self) -> MediaPlaylist:
        location = self.media_location or self.source
        with _stage("playlist"):
            parsed = parse(self.fetcher.read(location), location)
            if isinstance(parsed, list):
                chosen = choose_variant(parsed, self.variant)
                log.info("%s: master playlist with %d variants; following %s (%d bit/s)",
                         self.source, len(parsed), chosen.uri, chosen.bandwidth)
                self.media_location = chosen.uri
                parsed = parse(self.fetcher.read(chosen.uri), chosen.uri)
                if isinstance(parsed, list):
                    raise FetchError(chosen.uri, "not_hls", "a variant is itself a master playlist")
        return parsed

    def poll_once(self, publish: bool = True) -> list[SegmentEvent]:
        """Reload and emit what is new. Raises FetchError when the playlist cannot be read, and
        the bus's error when publishing fails (the events stay in the outbox). ``publish``
        False: only keep (the publisher thread of ``run`` publishes)."""
        playlist = self.reload()
        self.target_duration = playlist.target_duration or self.target_duration
        now, st = self.clock(), self.state
        if playlist.entries and playlist.last_sequence < st.last_media_sequence:
            known = [e for e in playlist.entries if e.media_sequence in st.recent]
            if known and all(st.recent[e.media_sequence] == e.listed_uri for e in known):
                metrics.PLAYLIST_EVENTS.labels("stale").inc()
                return []
            first = playlist.entries[0].media_sequence
            log.warning("%s: media sequence went back from %d to %d: the encoder restarted; "
                        "the stream continues at sequence %d", self.stream_id,
                        st.last_media_sequence, playlist.last_sequence, st.last_sequence + 1)
            metrics.PLAYLIST_EVENTS.labels("reset").inc()
            st.offset, st.last_media_sequence = st.last_sequence + 1 - first, first - 1
            self.states.save(st)
        new = [e for e in playlist.entries if e.media_sequence > st.last_media_sequence]
        if new and st.last_media_sequence >= 0 and new[0].media_sequence > st.last_media_sequence + 1:
            gone = new[0].media_sequence - st.last_media_sequence - 1
            log.warning("%s: %d segment(s) left the playlist window before they could be read "
                        "(media sequence %d–%d)", self.stream_id, gone, st.last_media_sequence + 1,
                        new[0].media_sequence - 1)
            metrics.STREAM_SEGMENTS.labels("missed").inc(gone)
        events = []
        for entry in new:
            if self._full():
                break  # downloaded later, once the bus has taken some (or counted missed)
            event = self._take(entry, now)
            if event is False:
                break  # retried at the next reload, keeping the stream in order
            if event is not None and entry.discontinuity:
                metrics.PLAYLIST_EVENTS.labels("discontinuity").inc()
            st.last_sequence = entry.media_sequence + st.offset
            st.last_media_sequence = entry.media_sequence
            st.remember(entry.media_sequence, entry.listed_uri)
            self.states.save(st, event.model_dump_json() if event else None)
            if event is not None:
                events.append(event)
                self._kept.set()
        metrics.OUTBOX_PENDING.labels(self.stream_id).set(self.states.pending_count(self.stream_id))
        self._track_progress(playlist, bool(events), now)
        if publish:
            self.publish_pending()
        return events

    def _full(self) -> bool:
        full = self.states.pending_count(self.stream_id) >= self.max_pending
        if full and not self._outbox_full:
            log.error("%s: %d segments are kept but not yet on the bus (the outbox is full): no "
                      "more downloads until the bus takes them; segments that leave the playlist "
                      "window meanwhile will be counted missed", self.stream_id, self.max_pending)
            metrics.OUTBOX_FULL.labels(self.stream_id).inc()
        elif not full and self._outbox_full:
            log.info("%s: the outbox has room again; downloading", self.stream_id)
        self._outbox_full = full
        return full

    def publish_pending(self) -> int:
        """Publish the outbox in order, each event removed once the bus has it; raises the bus's
        error at the first that fails (it and those after it stay for the next try)."""
        count = 0
        while batch := self.states.pending(self.stream_id):
            for outbox_id, event in batch:
                with _stage("publish"):
                    self.publish(SegmentEvent.model_validate_json(event))
                self.states.published(outbox_id)
                metrics.STREAM_SEGMENTS.labels("emitted").inc()
                self.emitted += 1
                count += 1
        metrics.OUTBOX_PENDING.labels(self.stream_id).set(0)
        return count

    def _take(self, entry, now: float) -> SegmentEvent | None | bool:
        """Download and keep one segment: its event, None when given up, False to retry later."""
        sequence = entry.media_sequence + self.state.offset
        try:
            with _stage("download"):
                data, name = self.assembler.assemble(entry)
                uri = self.sink.put(self.stream_id, sequence, name, data)
        except FetchError as exc:
            if exc.reason != "unsupported":
                return self._failed(entry, sequence, exc)
            log.error("%s: skipping segment %s: %s", self.stream_id, entry.uri, exc.detail)
            metrics.STREAM_SEGMENTS.labels("unsupported").inc()
            return None  # no retry can decrypt it
        except Exception as exc:  # the sink's disk or S3 error
            return self._failed(entry, sequence, exc)
        self._download_failures.pop(sequence, None)
        ready = entry.program_date_time + entry.duration if entry.program_date_time else now
        return SegmentEvent(stream_id=self.stream_id, sequence=sequence, uri=uri,
                            source_uri=entry.uri, duration=entry.duration,
                            discontinuity=entry.discontinuity, start_time=entry.program_date_time,
                            ready_at=min(ready, now))

    def _failed(self, entry, sequence: int, exc: Exception) -> None | bool:
        """Retry at the next reload (False) until the attempts are spent, then give up (None)."""
        attempts = self._download_failures.get(sequence, 0) + 1
        self._download_failures[sequence] = attempts
        if attempts < self.download_attempts:
            log.warning("%s: segment %s failed (%s); attempt %d of %d, retrying at the next "
                        "reload", self.stream_id, entry.uri, exc, attempts, self.download_attempts)
            return False
        log.error("%s: giving up on segment %s after %d attempts: %s", self.stream_id,
                  entry.uri, attempts, exc)
        metrics.STREAM_SEGMENTS.labels("download_failed").inc()
        self._download_failures.pop(sequence, None)
        return None

    def _track_progress(self, playlist: MediaPlaylist, progressed: bool, now: float) -> None:
        if progressed:
            self.last_new_at = now
            if self.stalled:
                log.info("%s: new segments again; no longer stalled", self.stream_id)
                self.stalled = False
                metrics.STREAMS_STALLED.labels(self.stream_id).set(0)
        elif not playlist.ended and not self.stalled and \
                now - self.last_new_at > self.stall_after * self.target_duration:
            self.stalled = True
            log.warning("%s: stalled: no new segment for %.0f s (%g × target duration %g s)",
                        self.stream_id, now - self.last_new_at, self.stall_after, self.target_duration)
            metrics.STREAMS_STALLED.labels(self.stream_id).set(1)
            metrics.STREAM_STALLS.labels(self.stream_id).inc()
        if playlist.ended and self.state.last_media_sequence >= playlist.last_sequence:
            self.ended = True
            metrics.PLAYLIST_EVENTS.labels("ended").inc()

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event, wait_for_stream: bool = False) -> None:
        """Follow until ENDLIST or ``stop``. Read errors are reported, counted and retried; on
        the first reload they raise unless ``wait_for_stream`` (the stream may not exist yet)."""
        started = False
        metrics.STREAMS_STALLED.labels(self.stream_id).set(0)
        done = threading.Event()  # the playlist ended: the publisher drains the outbox and stops
        publisher = threading.Thread(target=self._publish_loop, args=(stop, done), daemon=True,
                                     name=f"publisher-{self.stream_id}")
        publisher.start()  # first, whatever a previous run left in the outbox
        try:
            while not stop.is_set():
                progressed = False
                try:
                    progressed = bool(self.poll_once(publish=False))
                    started = True
                    self._problem("playlist", None)
                except FetchError as exc:
                    metrics.PLAYLIST_EVENTS.labels(exc.reason).inc()
                    if not started and not wait_for_stream:
                        raise
                    self._problem("playlist", f"cannot read the playlist {exc}; retrying")
                if self.ended:
                    log.info("%s: the playlist ended (ENDLIST) at sequence %d", self.stream_id,
                             self.state.last_sequence)
                    return
                stop.wait(self._interval(progressed))
        finally:
            done.set()
            self._kept.set()
            publisher.join()  # until the outbox is empty, or stop

    def _publish_loop(self, stop: threading.Event, done: threading.Event) -> None:
        """Move outbox events onto the bus, in order; a bus error is reported, counted and
        retried every second while the downloads go on."""
        while not stop.is_set():
            try:
                self.publish_pending()
                self._problem("bus", None)
            except Exception as exc:  # kafka-python reconnects by itself; we try again
                metrics.BUS_ERRORS.labels("publish").inc()
                metrics.OUTBOX_PENDING.labels(self.stream_id).set(self.states.pending_count(self.stream_id))
                self._problem("bus", f"cannot publish to the bus ({exc.__class__.__name__}: {exc}); "
                              f"{self.states.pending_count(self.stream_id)} segment(s) kept, waiting for it")
                stop.wait(1.0)
                continue
            if done.is_set():
                return
            self._kept.wait(1.0)
            self._kept.clear()

    def _interval(self, progressed: bool) -> float:
        if self.poll_interval is not None:
            return self.poll_interval
        # RFC 8216 §6.3.4: reload after a target duration, after half of it when unchanged.
        return self.target_duration if progressed else self.target_duration / 2

    def _problem(self, kind: str, message: str | None) -> None:
        """Log a problem when it starts or changes, and its end, not at every reload."""
        last = self._problems.get(kind)
        if message != last:
            if message:
                log.warning("%s: %s", self.stream_id, message)
            elif last:
                log.info("%s: %s recovered", self.stream_id, kind)
        self._problems[kind] = message


class _stage:
    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        metrics.STREAM_STAGE_SECONDS.labels(self.name).observe(time.perf_counter() - self.start)
