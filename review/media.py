"""A segment as the browser needs it: an MP4 the <video> element can play and seek, its exact
duration, and a motion curve drawn as the timeline's waveform.

The stored segment is an MPEG-TS (a local path or ``s3://``) read through the endpoint's own
``SegmentReader`` (its allow-lists apply). Browsers do not play TS, so it is stream-copied
(``ffmpeg -c copy``, no re-encoding) into a regular MP4 with its index at the front
(``+faststart``), so the player knows the duration at once and seeks with range requests.
``inference.decode.remux_to_mp4`` makes *fragmented* MP4 through pipes for decord, which needs
no index; a faststart MP4 needs a seekable output, hence a temporary file here.

The motion curve (mean absolute difference of consecutive frames, shrunk to 32×18 grey) shows
where things move, which is where activities start and stop: a reviewer sees the boundaries
before playing a frame.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from clipwatch.blobs import SegmentReader
from clipwatch.errors import UndecodableVideo
from clipwatch.testmedia import ffmpeg

_W, _H = 32, 18


@dataclass(frozen=True)
class ClipMedia:
    mp4: bytes
    duration: float  # seconds, from the frame count and rate
    fps: float
    motion: list[float]  # one value per frame in [0, 1]


def _run(cmd: list[str], data: bytes) -> bytes:
    proc = subprocess.run(cmd, input=data, capture_output=True, timeout=120)
    if proc.returncode != 0:
        first = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[0]
        raise UndecodableVideo(f"segment is not playable video: {first}")
    return proc.stdout


def frame_rate(data: bytes) -> float:
    exe = shutil.which("ffprobe")
    if exe is None:
        raise RuntimeError("ffprobe (Debian package ffmpeg) is required and is not installed")
    out = _run([exe, "-v", "error", "-select_streams", "v:0", "-show_entries",
                "stream=r_frame_rate", "-of", "csv=p=0", "-i", "pipe:0"], data).decode().strip()
    try:
        return float(Fraction(out.splitlines()[0]))
    except (ValueError, ZeroDivisionError, IndexError):
        raise UndecodableVideo("segment has no video stream with a frame rate") from None


def to_mp4(data: bytes) -> bytes:
    with tempfile.TemporaryDirectory(prefix="clipwatch-review-") as d:
        out = Path(d) / "clip.mp4"
        _run([ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", "pipe:0",
              "-map", "0:v:0", "-map", "0:a:0?", "-c", "copy", "-movflags", "+faststart",
              "-f", "mp4", str(out)], data)
        return out.read_bytes()


def motion_curve(data: bytes) -> np.ndarray:
    raw = _run([ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", "pipe:0",
                "-map", "0:v:0", "-vf", f"scale={_W}:{_H},format=gray", "-f", "rawvideo",
                "pipe:1"], data)
    frames = np.frombuffer(raw, np.uint8).reshape(-1, _H, _W).astype(np.float32)
    if len(frames) == 0:
        raise UndecodableVideo("segment has no video frames")
    diff = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))
    diff = np.concatenate([[diff[0] if len(diff) else 0.0], diff])
    # scaled by the clip's own peak, but never blowing sensor noise up to full height
    return diff / max(float(diff.max()), 4.0)


class MediaCache:
    """Remuxed clips by segment URI, the newest ``size`` kept (a review sitting revisits a few
    clips; remuxing costs ~0.1 s and the motion curve ~1 s for a 10 s 720p segment)."""

    def __init__(self, reader: SegmentReader, size: int = 16):
        self.reader = reader
        self.size = size
        self._items: OrderedDict[str, ClipMedia] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, uri: str) -> ClipMedia:
        with self._lock:
            if uri in self._items:
                self._items.move_to_end(uri)
                return self._items[uri]
        data = self.reader.read(uri)
        if not data:
            raise UndecodableVideo("segment is empty (0 bytes)")
        fps = frame_rate(data)
        motion = motion_curve(data)
        clip = ClipMedia(to_mp4(data), round(len(motion) / fps, 3), fps,
                         [round(float(v), 3) for v in motion])
        with self._lock:
            self._items[uri] = clip
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return clip

    def duration(self, uri: str) -> float:
        return self.get(uri).duration


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) bytes of a single ``Range: bytes=a-b`` header; None for the whole
    body; ValueError when unsatisfiable."""
    if not header or not header.startswith("bytes="):
        return None
    spec = header[6:].split(",")[0].strip()
    first, _, last = spec.partition("-")
    if first == "":
        n = int(last)
        return (max(size - n, 0), size - 1) if n > 0 else None
    a = int(first)
    b = min(int(last), size - 1) if last else size - 1
    if a >= size or b < a:
        raise ValueError(f"range {spec} outside 0-{size - 1}")
    return a, b
