"""Segment bytes → the sampled frames, decoded by decord straight from memory.

Decoding is the costly step on CPU (an H.264 720p frame is ~3–10 ms), so it decodes only what
the sampler asks for: one seek per clip, then consecutive frames (decord re-seeks for every
non-consecutive index, which for a stride-2 clip costs ~1.6× more than decoding the run and
dropping every other frame). decord scales each frame to the model's ``resize`` as it converts
it, like GluonCV's loader, so full-size RGB frames are never materialized.

MPEG-TS is first remuxed (``ffmpeg -c copy``, no re-encoding, in memory through pipes) into
fragmented MP4. decord 0.6 indexes TS wrongly: HLS segments start at a non-zero timestamp, and
measured against ffmpeg's own decode, decord's frame ``i`` of a 10 s 2 s-GOP segment is really
frame ``i + 60`` and its last GOP comes back as copies of one frame (a segment of a single GOP
cannot be read at all). In MP4 every index matches ffmpeg's frame exactly (tests/test_decode.py).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from clipwatch.errors import UndecodableVideo

from .sampling import ClipSampler

_decord = None
_without_mxnet = False  # set in decode-only processes (inference.decode_pool's workers)


def decode_only_process() -> None:
    """This process decodes and never runs MXNet: decord may load without MXNet first."""
    global _without_mxnet
    _without_mxnet = True


def _import_decord():
    global _decord
    if _decord is None:
        # MXNet must be loaded first: with decord loaded before it, MXNet's first forward
        # segfaults (measured here with mxnet 1.9.1 + decord 0.6.0; GluonCV imports them in
        # this order too). A decode-only process skips MXNet (~150 MB and 1 s less).
        if not _without_mxnet:
            import mxnet  # noqa: F401
        import decord

        decord.logging.set_level(decord.logging.QUIET)  # libav warnings on B-frame seeks
        _decord = decord
    return _decord


@dataclass
class DecodedClips:
    frames: np.ndarray  # (clips, T, H, W, 3) uint8 RGB
    indices: list[list[int]]
    num_frames: int
    fps: float


def is_mpegts(data: bytes) -> bool:
    """TS packets are 188 bytes, each starting with the sync byte 0x47."""
    return len(data) >= 377 and data[0] == data[188] == data[376] == 0x47


def remux_to_mp4(data: bytes) -> bytes:
    """The first video stream of a TS, stream-copied into fragmented MP4 (no temp files)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg is required to read MPEG-TS segments and is not installed")
    proc = subprocess.run(
        [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "mpegts", "-i", "pipe:0",
         "-map", "0:v:0", "-c", "copy", "-f", "mp4", "-movflags", "frag_keyframe+empty_moov",
         "pipe:1"], input=data, capture_output=True, timeout=60)
    if proc.returncode != 0 or not proc.stdout:
        text = proc.stderr.decode(errors="replace")
        if "matches no streams" in text:
            raise UndecodableVideo("segment has no video stream (audio-only?)")
        raise UndecodableVideo(f"segment is not decodable video: {_first_line(text)}")
    return proc.stdout


def open_video(data: bytes, width: int = -1, height: int = -1, num_threads: int = 0):
    """``num_threads`` = 0 lets libav pick (frame threads on every core); decode workers use 1,
    as their parallelism is the pool's (frame threading costs ~10% more CPU per frame here)."""
    decord = _import_decord()
    if not data:
        raise UndecodableVideo("segment is empty (0 bytes)")
    if is_mpegts(data):
        data = remux_to_mp4(data)
    try:
        return decord.VideoReader(io.BytesIO(data), width=width, height=height,
                                  num_threads=num_threads)
    except Exception as exc:  # decord raises DECORDError / RuntimeError with libav's text
        text = str(exc)
        if "cannot find video stream" in text:
            raise UndecodableVideo("segment has no video stream (audio-only?)") from None
        raise UndecodableVideo(f"segment is not decodable video: {_first_line(text)}") from None


def decode_clips(data: bytes, sampler: ClipSampler, resize: tuple[int, int] = (340, 256),
                 window: tuple[float, float] | None = None, rng=None,
                 num_threads: int = 0) -> DecodedClips:
    """Decode the frames ``sampler`` picks, scaled to ``resize`` = (width, height).

    ``window`` = (start, end) in seconds limits sampling to that stretch (a reviewer's
    segment); ``rng`` switches to random (training) sampling."""
    vr = open_video(data, width=resize[0], height=resize[1], num_threads=num_threads)
    num_frames = len(vr)
    if num_frames == 0:
        raise UndecodableVideo("segment has no video frames")
    first, last = 0, num_frames
    if window is not None:
        fps = float(vr.get_avg_fps())
        first, last = max(0, int(window[0] * fps)), min(num_frames, int(round(window[1] * fps)))
    keyframes = vr.get_key_indices() if sampler.snap_to_keyframe and rng is None else ()
    indices = [[first + i for i in clip] for clip in
               sampler.indices(last - first, [k - first for k in keyframes if k >= first], rng)]
    clips = []
    try:
        for clip in indices:
            run = vr.get_batch(list(range(clip[0], clip[-1] + 1))).asnumpy()
            clips.append(run[::sampler.stride])
    except Exception as exc:
        raise UndecodableVideo(
            f"could not decode frames {indices[0][0]}–{indices[-1][-1]} of {num_frames} "
            f"(corrupt or truncated segment?): {_first_line(str(exc))}") from None
    return DecodedClips(np.stack(clips), indices, num_frames, float(vr.get_avg_fps()))


def _first_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[0][-200:] if lines else "unknown error"
