"""The HLS follower against real playlists on disk, over HTTP and in S3 (moto on loopback)."""

from __future__ import annotations

import http.server
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from streaming.follower import Follower
from streaming.sinks import DirSink, S3Sink
from streaming.sources import Fetcher, FetchError
from streaming.state import StateStore

from deadline import joined, wait_until


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def write_playlist(d: Path, first: int, count: int, *, name: str = "seg_{:05d}.ts", target: int = 2,
                   ended: bool = False, discontinuity_at: int | None = None, pdt: str | None = None) -> Path:
    """A live media playlist listing segments first..first+count-1, each file written too."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}",
             f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    if pdt:
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{pdt}")
    for n in range(first, first + count):
        if n == discontinuity_at:
            lines.append("#EXT-X-DISCONTINUITY")
        lines += [f"#EXTINF:{target}.000000,", name.format(n)]
        seg = d / name.format(n)
        if not seg.exists():
            seg.write_bytes(f"segment {name.format(n)}".encode())
    if ended:
        lines.append("#EXT-X-ENDLIST")
    playlist = d / "live.m3u8"
    playlist.write_text("\n".join(lines) + "\n")
    return playlist


class Recorder(list):
    def __call__(self, event):
        self.append(event)


@pytest.fixture
def stream(tmp_path):
    d = tmp_path / "hls"
    d.mkdir()
    return d


def follower(stream: Path, tmp_path: Path, **kw) -> tuple[Follower, Recorder]:
    published = Recorder()
    f = Follower(str(stream / "live.m3u8"), published, DirSink(tmp_path / "spool"),
                 StateStore(tmp_path / "state.db"), stream_id="cam1", **kw)
    return f, published


def test_each_new_segment_is_emitted_once_as_the_window_slides(stream, tmp_path):
    write_playlist(stream, 0, 3)
    f, published = follower(stream, tmp_path)
    before = metric("clipwatch_stream_segments_total", outcome="emitted")
    assert [e.sequence for e in f.poll_once()] == [0, 1, 2]
    assert f.poll_once() == []  # unchanged playlist
    for n in (0, 1):
        (stream / f"seg_{n:05d}.ts").unlink()  # delete_segments: old ones disappear
    write_playlist(stream, 2, 3)
    assert [e.sequence for e in f.poll_once()] == [3, 4]
    assert [e.sequence for e in published] == [0, 1, 2, 3, 4]
    assert metric("clipwatch_stream_segments_total", outcome="emitted") - before == 5
    kept = Path(published[3].uri)
    assert kept.read_bytes() == b"segment seg_00003.ts" and kept.parent == tmp_path / "spool" / "cam1"
    assert published[3].source_uri == str(stream / "seg_00003.ts") and published[3].duration == 2.0
    assert published[3].request().uri == str(kept) and published[3].request().sequence == 3


def test_a_restarted_follower_neither_repeats_nor_skips(stream, tmp_path):
    write_playlist(stream, 0, 3)
    first, _ = follower(stream, tmp_path)
    first.poll_once()
    write_playlist(stream, 1, 4)
    second, published = follower(stream, tmp_path)  # a new process: state from the file only
    assert [e.sequence for e in second.poll_once()] == [3, 4]


def test_segments_that_left_the_window_unseen_are_counted_missed(stream, tmp_path):
    write_playlist(stream, 0, 3)
    f, _ = follower(stream, tmp_path)
    f.poll_once()
    before = metric("clipwatch_stream_segments_total", outcome="missed")
    write_playlist(stream, 6, 3)
    assert [e.sequence for e in f.poll_once()] == [6, 7, 8]
    assert metric("clipwatch_stream_segments_total", outcome="missed") - before == 3


def test_an_encoder_restart_continues_the_stream_and_a_stale_copy_is_ignored(stream, tmp_path):
    old = write_playlist(stream, 3, 3).read_text()
    f, _ = follower(stream, tmp_path)
    assert [e.sequence for e in f.poll_once()] == [3, 4, 5]
    write_playlist(stream, 1, 3)  # an older copy of this playlist (a CDN edge lagging behind)
    stale = metric("clipwatch_playlist_events_total", event="stale")
    assert f.poll_once() == []
    assert metric("clipwatch_playlist_events_total", event="stale") - stale == 1
    resets = metric("clipwatch_playlist_events_total", event="reset")
    write_playlist(stream, 0, 2, name="restart_{:05d}.ts")  # the encoder restarted at 0
    events = f.poll_once()
    assert [e.sequence for e in events] == [6, 7]  # new keys: nothing collides with 0–5
    assert [Path(e.source_uri).name for e in events] == ["restart_00000.ts", "restart_00001.ts"]
    assert metric("clipwatch_playlist_events_total", event="reset") - resets == 1
    write_playlist(stream, 0, 3, name="restart_{:05d}.ts")
    assert [e.sequence for e in f.poll_once()] == [8]
    assert old  # (the first playlist really was a different one)


def test_a_restarted_follower_meeting_a_stale_copy_emits_nothing_again(stream, tmp_path):
    """What the follower handled lately is persisted with its position: a restarted follower
    whose first reload hits a CDN edge still serving an older playlist must recognise the
    segments it already published, not take them for an encoder restart and publish them
    again under new sequence numbers (one segment, two predictions)."""
    write_playlist(stream, 3, 3)
    first, published = follower(stream, tmp_path)
    assert [e.sequence for e in first.poll_once()] == [3, 4, 5]
    write_playlist(stream, 1, 3)  # the stale copy
    second, again = follower(stream, tmp_path)  # a new process: state from the file only
    stale = metric("clipwatch_playlist_events_total", event="stale")
    assert second.poll_once() == [] and again == []
    assert metric("clipwatch_playlist_events_total", event="stale") - stale == 1
    write_playlist(stream, 4, 3)  # the fresh playlist again
    assert [e.sequence for e in second.poll_once()] == [6]


def test_a_state_file_from_before_the_recent_entries_still_loads(tmp_path):
    import sqlite3

    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute("CREATE TABLE streams (stream_id TEXT PRIMARY KEY, last_sequence INTEGER NOT NULL, "
                   "offset INTEGER NOT NULL, last_media_sequence INTEGER NOT NULL)")
        db.execute("INSERT INTO streams VALUES ('cam1', 41, 0, 41)")
    state = StateStore(tmp_path / "old.db").load("cam1")
    assert (state.last_sequence, state.recent) == (41, {})


def test_endlist_ends_the_stream_and_discontinuities_and_times_are_carried(stream, tmp_path):
    write_playlist(stream, 0, 3, ended=True, discontinuity_at=2, pdt="2026-11-01T10:00:00.000Z")
    f, published = follower(stream, tmp_path)
    f.run(threading.Event())  # returns at ENDLIST
    assert f.ended and [e.sequence for e in published] == [0, 1, 2]
    assert [e.discontinuity for e in published] == [False, False, True]
    start = datetime(2026, 11, 1, 10, tzinfo=timezone.utc).timestamp()
    assert [e.start_time for e in published] == [start, start + 2, start + 4]
    assert published[0].ready_at == start + 2  # the segment's end, not when we saw it


def test_a_master_playlist_follows_the_variant_sized_for_the_model(tmp_path):
    from streaming.playlist import choose_variant, parse

    root = tmp_path / "hls"
    for height in (144, 360, 720):
        (root / f"v{height}").mkdir(parents=True)
        write_playlist(root / f"v{height}", 0, 2, name=f"{height}_{{:05d}}.ts")
    (root / "master.m3u8").write_text("#EXTM3U\n" + "".join(
        f"#EXT-X-STREAM-INF:BANDWIDTH={h * 5000},RESOLUTION={h * 16 // 9}x{h}\nv{h}/live.m3u8\n"
        for h in (720, 144, 360)))
    published = Recorder()
    f = Follower(str(root / "master.m3u8"), published, DirSink(tmp_path / "spool"),
                 StateStore(tmp_path / "s.db"))
    f.poll_once()
    assert [Path(e.source_uri).name for e in published] == ["360_00000.ts", "360_00001.ts"]
    assert f.stream_id == str(root)
    variants = parse((root / "master.m3u8").read_bytes(), str(root / "master.m3u8"))
    assert choose_variant(variants, "highest").height == 720
    assert choose_variant(variants, "lowest").height == 144
    assert choose_variant(variants, "0").height == 720
    with pytest.raises(ValueError, match="variant 5 does not exist"):
        choose_variant(variants, "5")


def test_not_hls_and_a_missing_playlist_are_clear_errors(stream, tmp_path):
    (stream / "live.m3u8").write_text("<html>404 page</html>\n")
    f, _ = follower(stream, tmp_path)
    with pytest.raises(FetchError, match="not an HLS playlist: line 1 is '<html>404 page</html>'") as err:
        f.run(threading.Event())
    assert err.value.reason == "not_hls"
    (stream / "live.m3u8").unlink()
    with pytest.raises(FetchError, match="no such file"):
        f.poll_once()


def test_waiting_for_a_stream_counts_the_failures_and_picks_it_up(stream, tmp_path):
    f, published = follower(stream, tmp_path, poll_interval=0.02)
    before = metric("clipwatch_playlist_events_total", event="not_found")
    stop = threading.Event()
    thread = threading.Thread(target=f.run, args=(stop, True))
    thread.start()
    try:
        wait_until(lambda: metric("clipwatch_playlist_events_total", event="not_found") - before >= 2,
                   "two counted not_found reloads", interval_s=0.01)
        write_playlist(stream, 0, 2, ended=True)
        joined(thread, "the follower to pick up the stream and return at ENDLIST")
    finally:
        stop.set()  # a follower still waiting would keep pytest from exiting
    assert [e.sequence for e in published] == [0, 1]


def test_a_segment_that_fails_to_download_is_retried_then_given_up(stream, tmp_path):
    write_playlist(stream, 0, 3)
    (stream / "seg_00001.ts").unlink()  # listed, but gone
    f, published = follower(stream, tmp_path, download_attempts=3)
    before = metric("clipwatch_stream_segments_total", outcome="download_failed")
    assert [e.sequence for e in f.poll_once()] == [0]  # stops there, to keep the stream in order
    assert f.poll_once() == []
    assert [e.sequence for e in f.poll_once()] == [2]  # third attempt: given up, counted
    assert metric("clipwatch_stream_segments_total", outcome="download_failed") - before == 1
    assert f.state.last_sequence == 2


def test_a_stalled_stream_is_reported_once_and_counted(stream, tmp_path):
    now = [1000.0]
    write_playlist(stream, 0, 1, target=10)
    f, _ = follower(stream, tmp_path, clock=lambda: now[0])
    stalls = metric("clipwatch_stream_stalls_total", stream="cam1")
    f.poll_once()
    now[0] += 29
    f.poll_once()
    assert not f.stalled
    now[0] += 2  # 31 s > 3 × 10 s without a new segment
    f.poll_once()
    f.poll_once()
    assert f.stalled and metric("clipwatch_stream_stalled", stream="cam1") == 1
    assert metric("clipwatch_stream_stalls_total", stream="cam1") - stalls == 1
    write_playlist(stream, 0, 2, target=10)
    f.poll_once()
    assert not f.stalled and metric("clipwatch_stream_stalled", stream="cam1") == 0


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        if self.path.startswith("/broken"):
            self.send_error(503)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: _Handler(*a, directory=str(root), **k))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_http_stream_is_followed_and_http_failures_are_named(http_root, tmp_path):
    root, url = http_root
    (root / "cam").mkdir()
    write_playlist(root / "cam", 0, 2)
    published = Recorder()
    f = Follower(f"{url}/cam/live.m3u8", published, DirSink(tmp_path / "spool"),
                 StateStore(tmp_path / "s.db"), stream_id="cam")
    f.poll_once()
    assert [Path(e.uri).read_bytes() for e in published] == [b"segment seg_00000.ts", b"segment seg_00001.ts"]
    assert published[0].source_uri == f"{url}/cam/seg_00000.ts"
    fetcher = Fetcher(timeout_s=0.2)
    for path, reason in (("/cam/nothing.m3u8", "not_found"), ("/slow/live.m3u8", "timeout"),
                         ("/broken/live.m3u8", "http_503")):
        with pytest.raises(FetchError) as err:
            fetcher.read(url + path)
        assert err.value.reason == reason
    with pytest.raises(FetchError) as err:
        Fetcher(timeout_s=0.5).read("http://127.0.0.1:9/live.m3u8")  # nothing listens there
    assert err.value.reason == "unreachable"


def test_an_s3_stream_is_followed_and_segments_are_uploaded(aws, tmp_path):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="encoder-out")
    s3.create_bucket(Bucket="archive")
    local = tmp_path / "enc"
    local.mkdir()
    write_playlist(local, 5, 2)
    for p in local.iterdir():
        s3.upload_file(str(p), "encoder-out", f"cam9/{p.name}")
    published = Recorder()
    f = Follower("s3://encoder-out/cam9/live.m3u8", published, S3Sink("s3://archive/live"),
                 StateStore(tmp_path / "s.db"))
    f.poll_once()
    assert f.stream_id == "s3://encoder-out/cam9"
    assert [e.uri for e in published] == [
        "s3://archive/live/s3_encoder-out_cam9/00000005-seg_00005.ts",
        "s3://archive/live/s3_encoder-out_cam9/00000006-seg_00006.ts"]
    body = s3.get_object(Bucket="archive", Key="live/s3_encoder-out_cam9/00000006-seg_00006.ts")["Body"].read()
    assert body == b"segment seg_00006.ts"
    assert published[0].source_uri == "s3://encoder-out/cam9/seg_00005.ts"


class FlakyBus(list):
    """A publish that fails while ``down`` is set, as a broker outage does."""

    def __init__(self):
        super().__init__()
        self.down = threading.Event()

    def __call__(self, event):
        if self.down.is_set():
            raise ConnectionError("the broker is down")
        self.append(event)


def test_a_bus_outage_three_windows_long_loses_nothing_and_keeps_the_order(stream, tmp_path):
    """The follower keeps downloading while the bus is down (the encoder's window slides on and
    deletes what nobody read); the kept segments wait in the outbox and go out in order."""
    bus = FlakyBus()
    f = Follower(str(stream / "live.m3u8"), bus, DirSink(tmp_path / "spool"), StateStore(tmp_path / "state.db"),
                 stream_id="cam1", poll_interval=0.02)
    write_playlist(stream, 0, 3)
    stop = threading.Event()
    thread = threading.Thread(target=f.run, args=(stop,), daemon=True)
    missed = metric("clipwatch_stream_segments_total", outcome="missed")
    thread.start()
    try:
        wait_until(lambda: len(bus) == 3, "the first three segments on the bus")
        bus.down.set()
        for first in range(1, 11):  # the 3-segment window slides 10 times: 3+ windows of outage
            write_playlist(stream, first, 3)
            (stream / f"seg_{first - 1:05d}.ts").unlink()  # delete_segments
            wait_until(lambda: f.state.last_media_sequence == first + 2, f"segment {first + 2} kept")
        assert len(bus) == 3 and f.states.pending_count("cam1") == 10
        assert metric("clipwatch_stream_outbox_pending", stream="cam1") == 10
        bus.down.clear()
        write_playlist(stream, 10, 3, ended=True)
        joined(thread, "the follower at ENDLIST", timeout_s=60)
    finally:
        stop.set()
        bus.down.clear()
    assert [e.sequence for e in bus] == list(range(13))
    assert metric("clipwatch_stream_segments_total", outcome="missed") - missed == 0
    assert f.states.pending_count("cam1") == 0


def test_the_outbox_is_bounded_and_a_restart_publishes_what_was_pending_first(stream, tmp_path):
    bus = FlakyBus()
    bus.down.set()
    write_playlist(stream, 0, 6)
    f = Follower(str(stream / "live.m3u8"), bus, DirSink(tmp_path / "spool"), StateStore(tmp_path / "state.db"),
                 stream_id="cam1", max_pending=4)
    full = metric("clipwatch_stream_outbox_full_total", stream="cam1")
    with pytest.raises(ConnectionError):
        f.poll_once()
    assert f.state.last_media_sequence == 3 and f.states.pending_count("cam1") == 4  # 4 kept, then paused
    assert metric("clipwatch_stream_outbox_full_total", stream="cam1") - full == 1
    # A new process, the bus back: the four pending go out first, then the rest, in order.
    bus.down.clear()
    g = Follower(str(stream / "live.m3u8"), bus, DirSink(tmp_path / "spool"), StateStore(tmp_path / "state.db"),
                 stream_id="cam1", max_pending=4)
    g.poll_once()  # still full when it reloads: publishes the four
    assert [e.sequence for e in bus] == [0, 1, 2, 3]
    g.poll_once()
    assert [e.sequence for e in bus] == [0, 1, 2, 3, 4, 5]
