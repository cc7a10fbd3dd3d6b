"""Streams as encoders really write them, each written by ffmpeg's own HLS muxer (LL-HLS and
SAMPLE-AES playlists by hand around ffmpeg's segments: ffmpeg writes neither), followed by the
real follower and classified by the real endpoint: every segment of every supported form gets
a prediction; an unsupported one gets a clear, counted refusal."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from clipwatch.blobs import SegmentReader
from clipwatch.testmedia import ffmpeg
from inference.decode import PyAVVideo
from inference.predictor import Endpoint
from streaming.follower import Follower
from streaming.playlist import choose_variant, parse
from streaming.sinks import DirSink
from streaming.state import StateStore

SOURCE = ["-f", "lavfi", "-i", "testsrc2=size={size}:rate={fps}", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]


def encode(out: Path, *, seconds: int = 6, size: str = "320x240", fps: int = 30, codec: str = "h264",
           hls: list[str] = (), audio: bool = True, playlist: str = "live.m3u8") -> Path:
    """A finished (VOD) HLS stream of 2 s segments written by ffmpeg's HLS muxer."""
    out.mkdir(parents=True, exist_ok=True)
    video = (["-c:v", "libx264", "-preset", "ultrafast", "-g", str(2 * fps), "-keyint_min", str(2 * fps),
              "-sc_threshold", "0"] if codec == "h264" else
             ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
              f"log-level=error:keyint={2 * fps}:min-keyint={2 * fps}:open-gop=1:scenecut=0"])
    source = [s.format(size=size, fps=fps) for s in SOURCE]
    cmd = [ffmpeg(), "-loglevel", "error", "-y", *source, "-t", str(seconds), "-map", "0:v",
           *(["-map", "1:a", "-c:a", "aac", "-b:a", "64k"] if audio else []), *video, "-pix_fmt", "yuv420p",
           "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", *hls, str(out / playlist)]
    subprocess.run(cmd, check=True, cwd=out, timeout=300)
    return out / playlist


def follow(playlist: Path, tmp_path: Path, **kw) -> list:
    published = []
    f = Follower(str(playlist), published.append, DirSink(tmp_path / "spool"), StateStore(tmp_path / "state.db"),
                 stream_id="cam", poll_interval=0.01, **kw)
    f.run(threading.Event())  # returns at ENDLIST
    return published


def classify(events, classifier, tmp_path: Path) -> list:
    endpoint = Endpoint(classifier, SegmentReader(allowed_dirs=(tmp_path / "spool",)), None, decode_workers=0)
    try:
        return [endpoint.invoke(e.request()) for e in events]
    finally:
        endpoint.close()


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


FORMS = {
    "ts, h264 + aac": {},
    "fmp4 (CMAF), h264 + aac": {"hls": ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4"]},
    "byte ranges of one file": {"hls": ["-hls_flags", "single_file"]},
    "60 fps": {"fps": 60},
    "portrait 360x640": {"size": "360x640"},
    "1080p": {"size": "1920x1080", "seconds": 4},
    "hevc, open GOP (leading pictures)": {"codec": "hevc", "size": "640x360"},
    "hevc in fmp4": {"codec": "hevc", "size": "640x360", "hls": ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4"]},
    "no audio": {"audio": False},
}


@pytest.mark.parametrize("form", list(FORMS))
def test_every_segment_of_a_supported_form_is_predicted(form, tmp_path, demo_classifier):
    options = FORMS[form]
    playlist = encode(tmp_path / "hls", **options)
    listed = [e for e in parse(playlist.read_bytes(), str(playlist)).entries]
    events = follow(playlist, tmp_path)
    assert [e.sequence for e in events] == [e.media_sequence for e in listed] and len(events) >= 2
    predictions = classify(events, demo_classifier, tmp_path)
    assert all(p.label in demo_classifier.classes and p.frames for p in predictions)
    if "fmp4" in form:
        assert all(e.uri.endswith(".m4s.mp4") for e in events)  # init section + segment, one object
    # Every frame the decoder says a segment has can be decoded from the segment alone: a clip
    # (or a reviewer's window) may start at frame 0.
    for e in events:
        video = PyAVVideo(Path(e.uri).read_bytes())
        assert video.frames(list(range(min(4, video.num_frames)))).shape[0] == min(4, video.num_frames)
        if form.startswith("hevc") and e.sequence > 0:
            assert video.leading > 0  # the open-GOP leading pictures were really there


def test_aes_128_segments_are_decrypted_with_the_key_the_playlist_names(tmp_path, demo_classifier):
    hls = tmp_path / "hls"
    hls.mkdir()
    (hls / "enc.key").write_bytes(bytes(range(16)))
    (hls / "keyinfo").write_text("enc.key\nenc.key\n")  # key URI in the playlist, key file
    playlist = encode(hls, hls=["-hls_key_info_file", "keyinfo"])
    assert "METHOD=AES-128" in playlist.read_text()
    raw = (hls / "live0.ts").read_bytes()
    assert raw[0] != 0x47  # really encrypted: not an MPEG-TS sync byte
    events = follow(playlist, tmp_path)
    assert len(events) == 3 and Path(events[0].uri).read_bytes()[0] == 0x47
    assert len(classify(events, demo_classifier, tmp_path)) == 3


def test_a_wrong_key_is_a_download_failure_not_a_garbled_segment(tmp_path):
    hls = tmp_path / "hls"
    hls.mkdir()
    (hls / "enc.key").write_bytes(bytes(range(16)))
    (hls / "keyinfo").write_text("enc.key\nenc.key\n")
    playlist = encode(hls, hls=["-hls_key_info_file", "keyinfo"], seconds=2)
    (hls / "enc.key").write_bytes(bytes(16))  # the key rotated away under the playlist
    failed = metric("clipwatch_stream_segments_total", outcome="download_failed")
    assert follow(playlist, tmp_path) == []
    assert metric("clipwatch_stream_segments_total", outcome="download_failed") - failed == 1


@pytest.mark.parametrize("key_tag", [
    '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="enc.key"',
    '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://fairplay-key",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1"',
])
def test_sample_aes_and_drm_are_refused_clearly_and_counted(key_tag, tmp_path, caplog):
    playlist = encode(tmp_path / "hls", seconds=4)
    text = playlist.read_text().replace("#EXTINF", key_tag + "\n#EXTINF", 1)
    playlist.write_text(text)
    unsupported = metric("clipwatch_stream_segments_total", outcome="unsupported")
    assert follow(playlist, tmp_path) == []
    assert metric("clipwatch_stream_segments_total", outcome="unsupported") - unsupported == 2
    assert "which clipwatch does not decrypt" in caplog.text and "SAMPLE-AES" in caplog.text


def test_fmp4_with_a_new_init_section_after_a_discontinuity(tmp_path, demo_classifier):
    """An encoder restart with new settings: a second EXT-X-MAP after EXT-X-DISCONTINUITY; each
    segment must travel with its own init section."""
    first = encode(tmp_path / "a", seconds=4, hls=["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4"])
    second = encode(tmp_path / "b", seconds=4, size="480x270",
                    hls=["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4"])

    def body(playlist: Path, folder: str) -> list[str]:
        lines = [l for l in playlist.read_text().splitlines() if l.startswith(("#EXT-X-MAP", "#EXTINF")) or
                 (l and not l.startswith("#"))]
        return [l.replace('URI="', f'URI="{folder}/') if l.startswith("#EXT-X-MAP") else
                (f"{folder}/{l}" if not l.startswith("#") else l) for l in lines]

    joined = tmp_path / "live.m3u8"
    joined.write_text("\n".join(["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0",
                                 *body(first, "a"), "#EXT-X-DISCONTINUITY", *body(second, "b"), "#EXT-X-ENDLIST", ""]))
    events = follow(joined, tmp_path)
    assert len(events) == 4 and [e.discontinuity for e in events] == [False, False, True, False]
    sizes = [PyAVVideo(Path(e.uri).read_bytes())._ctx.width for e in events]
    assert sizes == [320, 320, 480, 480]
    assert len(classify(events, demo_classifier, tmp_path)) == 4


def test_low_latency_hls_follows_complete_segments_and_ignores_parts(tmp_path):
    """ffmpeg does not write LL-HLS: its fMP4 segments under a playlist shaped like Apple's
    LL-HLS example (PART-INF, SERVER-CONTROL, EXT-X-PART, PRELOAD-HINT, RENDITION-REPORT)."""
    playlist = encode(tmp_path / "hls", seconds=6, hls=["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4"])
    segments = [l for l in playlist.read_text().splitlines() if l.endswith(".m4s")]
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-VERSION:9",
             "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0", "#EXT-X-PART-INF:PART-TARGET=0.5",
             "#EXT-X-MEDIA-SEQUENCE:0", '#EXT-X-MAP:URI="init.mp4"']
    for i, name in enumerate(segments[:2]):
        lines += [f'#EXT-X-PART:DURATION=0.5,URI="part{i}.{k}.m4s"' + (",INDEPENDENT=YES" if k == 0 else "")
                  for k in range(4)]
        lines += ["#EXTINF:2.0,", name]
    lines += ['#EXT-X-PART:DURATION=0.5,URI="part2.0.m4s",INDEPENDENT=YES', '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part2.1.m4s"',
              '#EXT-X-RENDITION-REPORT:URI="../low/live.m3u8",LAST-MSN=2,LAST-PART=0']
    playlist.write_text("\n".join(lines) + "\n")
    published = []
    f = Follower(str(playlist), published.append, DirSink(tmp_path / "spool"), StateStore(tmp_path / "s.db"),
                 stream_id="cam")
    f.poll_once()
    assert [e.sequence for e in published] == [0, 1]  # the segment still being written: not yet


def test_an_audio_only_variant_is_never_followed(tmp_path):
    out = tmp_path / "hls"
    out.mkdir()
    subprocess.run([ffmpeg(), "-loglevel", "error", "-y", *[s.format(size="320x240", fps=30) for s in SOURCE],
                    "-t", "4", "-map", "0:v", "-map", "1:a", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "60", "-c:a", "aac", "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
                    "-master_pl_name", "master.m3u8", "-var_stream_map", "a:1 v:0,a:0", "stream_%v.m3u8"],
                   check=True, cwd=out, timeout=300)
    variants = parse((out / "master.m3u8").read_bytes(), str(out / "master.m3u8"))
    assert len(variants) == 2 and not variants[0].has_video  # ffmpeg lists the audio-only one first
    assert choose_variant(variants, "auto").has_video and choose_variant(variants, "lowest").has_video
    with pytest.raises(ValueError, match="audio only"):
        choose_variant(variants, "0")
    with pytest.raises(ValueError, match="only audio variants"):
        choose_variant(variants[:1])
    events = follow(out / "master.m3u8", tmp_path)
    assert len(events) == 2
