"""Segment bytes → the sampled frames, scaled to the model's ``resize``, decoded straight from
memory (no temp files). Two decoders behind one function, ``decode_clips``:

- ``pyav`` (default): FFmpeg's own demuxers and H.264 decoder through PyAV. It reads MPEG-TS
  as it is, indexes frames by presentation time from the demuxed packets (no container index
  needed), starts decoding at the keyframe before the clip, **skips the pictures nothing
  references** when the sampler does not want them (H.264 ``nal_ref_idc`` = 0: with a stride-2
  clip about a quarter of the frames a B-frame encoder writes), and converts only the
  sampled frames to RGB. On a 10 s 720p segment this decodes the I3D clip in ~0.6× decord's time
  (README "Speed").
- ``decord`` (GluonCV's loader; selectable): MPEG-TS is first remuxed (``ffmpeg -c copy``,
  through pipes) into fragmented MP4, because decord 0.6 indexes TS wrongly: HLS segments start
  at a non-zero timestamp, and measured against ffmpeg's own decode, decord's frame ``i`` of a
  10 s 2 s-GOP segment is really frame ``i + 60``, its last GOP comes back as copies of one
  frame, and a segment of a single GOP cannot be read at all. It decodes one consecutive run per
  clip (decord re-seeks for every non-consecutive index, ~1.6× slower for stride 2).

Both scale bilinearly as they convert to RGB, like GluonCV's loader (decord), so full-size RGB
frames are never made; the two differ by < 1 grey level on average (libswscale versions), and
every frame index matches ffmpeg's own decode (tests/test_decode.py).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from clipwatch.errors import UndecodableVideo

from .sampling import ClipSampler

DECODERS = ("pyav", "decord")
DEFAULT_DECODER = "pyav"

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


def import_decoder(decoder: str = DEFAULT_DECODER) -> None:
    """Load the decoder's libraries now (start-up), not on the first request."""
    check_decoder(decoder)
    if decoder == "decord":
        _import_decord()
    else:
        import av  # noqa: F401


def check_decoder(decoder: str) -> None:
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")


@dataclass
class DecodedClips:
    frames: np.ndarray  # (clips, T, H, W, 3) uint8 RGB
    indices: list[list[int]]
    num_frames: int
    fps: float


def scaled_size(width: int, height: int, resize: tuple[int, int] | int) -> tuple[int, int]:
    """The (width, height) frames are scaled to: a pair as given (-1 keeps that side); one
    number is the short side, the aspect ratio kept (portrait and landscape alike)."""
    if not isinstance(resize, int):
        return int(resize[0]), int(resize[1])
    scale = resize / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def frame_source(data: bytes, resize: tuple[int, int] | int, num_threads: int = 0,
                 decoder: str = DEFAULT_DECODER) -> "PyAVVideo | DecordVideo":
    """The segment's frames by index (``num_frames``, ``fps``, ``keyframes()``, ``frames()``,
    ``close()``), decoded by ``decoder``."""
    check_decoder(decoder)
    if not data:
        raise UndecodableVideo("segment is empty (0 bytes)")
    return (PyAVVideo if decoder == "pyav" else DecordVideo)(data, resize, num_threads)


def decode_clips(data: bytes, sampler: ClipSampler, resize: tuple[int, int] | int = (340, 256),
                 window: tuple[float, float] | None = None, rng=None, num_threads: int = 0,
                 decoder: str = DEFAULT_DECODER) -> DecodedClips:
    """Decode the frames ``sampler`` picks, scaled to ``resize`` (``scaled_size``).

    ``window`` = (start, end) in seconds limits sampling to that stretch (a reviewer's
    segment); ``rng`` switches to random (training) sampling. ``num_threads`` = 0 lets libav
    pick (frame threads on every core); decode workers use 1 under load, as their parallelism
    is the pool's (frame threading costs ~10% more CPU per frame here)."""
    video = frame_source(data, resize, num_threads, decoder)
    try:
        num_frames = video.num_frames
        if num_frames == 0:
            raise UndecodableVideo("segment is not decodable video: it has no complete video frames")
        first, last = 0, num_frames
        if window is not None:
            first, last = max(0, int(window[0] * video.fps)), min(num_frames, int(round(window[1] * video.fps)))
        sampler = sampler.for_rate(video.fps)
        keyframes = video.keyframes() if sampler.snap_to_keyframe and rng is None else ()
        indices = [[first + i for i in clip] for clip in
                   sampler.indices(last - first, [k - first for k in keyframes if k >= first], rng)]
        try:
            clips = [video.frames(clip) for clip in indices]
        except UndecodableVideo:
            raise
        except Exception as exc:  # libav's errors, as the decoders raise them
            raise UndecodableVideo(
                f"could not decode frames {indices[0][0]}–{indices[-1][-1]} of {num_frames} "
                f"(corrupt or truncated segment?): {_first_line(str(exc))}") from None
        return DecodedClips(np.stack(clips), indices, num_frames, video.fps)
    finally:
        video.close()


# ---------------------------------------------------------------------------------------------
# PyAV
# ---------------------------------------------------------------------------------------------

class PyAVVideo:
    """One segment's video stream, demuxed once (a 10 s segment: ~20 ms); frames by index."""

    def __init__(self, data: bytes, resize: tuple[int, int] | int = (-1, -1), num_threads: int = 0):
        import av
        from av.video.reformatter import VideoReformatter

        try:
            self._container = av.open(io.BytesIO(data), mode="r")
        except av.error.FFmpegError as exc:
            raise UndecodableVideo(f"segment is not decodable video: {_first_line(str(exc))}") from None
        if not self._container.streams.video:
            raise UndecodableVideo("segment has no video stream (audio-only?)")
        stream = self._container.streams.video[0]
        self._packets = []
        try:
            for packet in self._container.demux(stream):
                if packet.size and packet.pts is not None:
                    self._packets.append(packet)
        except av.error.FFmpegError:
            pass  # damage further on: the frames before it are still good
        if is_mpegts(data) and len(data) % 188 and self._packets:
            self._packets.pop()  # a TS cut mid-packet: its last frame is torn
        # An open-GOP encoder (x265's default, x264 --open-gop) starts a segment with a CRA/
        # I picture followed, in decode order, by leading pictures that refer to the previous
        # segment: alone, they cannot be decoded (FFmpeg drops them). They are not frames of
        # this segment's timeline, so a clip or a review window never asks for one.
        leading = _leading_pictures(stream.codec_context, self._packets)
        self.leading = len(leading)
        self._packets = [p for i, p in enumerate(self._packets) if i not in leading]
        # A frame's index is its rank in presentation order, as decord's and ffmpeg's are.
        order = sorted(p.pts for p in self._packets)
        self._rank = {pts: i for i, pts in enumerate(order)}
        self._display = [self._rank[p.pts] for p in self._packets]  # by decode position
        self.num_frames = len(self._rank)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 30.0
        ctx = stream.codec_context
        ctx.thread_type = "AUTO"
        ctx.thread_count = num_threads  # 0: libav picks (all cores)
        self._ctx, self._used = ctx, False
        self.decoded = self.skipped = 0  # pictures sent to the decoder, and skipped
        self._disposable = _disposable_check(ctx)
        w, h = scaled_size(ctx.width, ctx.height, resize)
        self._size = (w if w > 0 else None, h if h > 0 else None)
        self._reformatter = VideoReformatter()

    def keyframes(self) -> list[int]:
        return sorted(self._display[i] for i, p in enumerate(self._packets) if p.is_keyframe)

    def close(self) -> None:
        self._packets = []
        self._container.close()

    def frames(self, clip: list[int]) -> np.ndarray:
        """The frames at display indices ``clip`` (ascending), (T, H, W, 3) uint8 RGB."""
        want, out = set(clip), {}
        keys = [i for i, p in enumerate(self._packets) if p.is_keyframe and self._display[i] <= clip[0]]
        start = max(keys, key=lambda i: self._display[i]) if keys else 0
        # Every picture shown up to the clip's last frame is decoded by then (B-frames come
        # after the picture they precede).
        end = max(i for i, d in enumerate(self._display) if d <= clip[-1])
        if self._used:
            self._ctx.flush_buffers()
        self._used = True
        for pos in range(start, end + 1):
            if self._display[pos] not in want and self._disposable(self._packets[pos]):
                self.skipped += 1
                continue  # nothing refers to it and the clip does not show it
            self.decoded += 1
            self._keep(self._ctx.decode(self._packets[pos]), want, out)
        self._keep(self._ctx.decode(None), want, out)  # drain the reorder and thread delay
        missing = sorted(want - out.keys())
        if missing:
            raise UndecodableVideo(f"could not decode frames {missing[0]}–{missing[-1]} of "
                                   f"{self.num_frames} (corrupt or truncated segment?)")
        return np.stack([out[i] for i in clip])

    def _keep(self, decoded, want: set[int], out: dict[int, np.ndarray]) -> None:
        for frame in decoded:
            index = self._rank.get(frame.pts)
            if index in want:
                out[index] = self._reformatter.reformat(
                    frame, width=self._size[0], height=self._size[1], format="rgb24",
                    interpolation="BILINEAR").to_ndarray()


HEVC_RASL = (8, 9)  # random access skipped leading pictures: they need the previous GOP
HEVC_IRAP = range(16, 24)


def _leading_pictures(ctx, packets) -> set[int]:
    """Decode positions of the pictures that cannot be decoded from this segment alone: the
    leading pictures of its first random-access point. HEVC marks them (RASL NAL units, up to
    the next random-access point); elsewhere they are the pictures after the first keyframe
    that are shown before it."""
    first = next((i for i, p in enumerate(packets) if p.is_keyframe), None)
    if first is None:
        return set()
    if ctx.name == "hevc":
        length_size = _length_size(ctx.extradata or b"", "hevc")
        out = set()
        for i in range(first + 1, len(packets)):
            types = [(h >> 1) & 0x3F for h in _nal_headers(bytes(packets[i]), length_size)]
            if any(t in HEVC_IRAP for t in types):
                break
            if any(t in HEVC_RASL for t in types):
                out.add(i)
        return out
    return {i for i, p in enumerate(packets) if i > first and p.pts < packets[first].pts}


def _length_size(extradata: bytes, codec: str) -> int | None:
    """MP4 carries length-prefixed NAL units (the size in avcC/hvcC extradata); TS, Annex B."""
    at = 21 if codec == "hevc" else 4  # lengthSizeMinusOne in hvcC / avcC
    if len(extradata) <= at or extradata[0] != 1:
        return None
    return (extradata[at] & 3) + 1


def _nal_headers(payload: bytes, length_size: int | None):
    """The first byte of each NAL unit in one access unit (Annex B start codes, or the
    length-prefixed units of MP4 when ``length_size`` is given), lazily."""
    if length_size is None:
        at = payload.find(b"\x00\x00\x01")
        while 0 <= at < len(payload) - 3:
            yield payload[at + 3]
            at = payload.find(b"\x00\x00\x01", at + 3)
        return
    at = 0
    while at + length_size < len(payload):
        yield payload[at + length_size]
        at += length_size + int.from_bytes(payload[at:at + length_size], "big")


def _disposable_check(ctx):
    """packet → True when it holds an H.264 picture no other picture references
    (``nal_ref_idc`` 0), so a decoder that will not show it can skip it. Other codecs: never."""
    if ctx.name != "h264":
        return lambda packet: False
    length_size = _length_size(ctx.extradata or b"", "h264")

    def disposable(packet) -> bool:
        header = _first_slice_header(bytes(packet), length_size)
        return header is not None and (header >> 5) & 3 == 0
    return disposable


def _first_slice_header(payload: bytes, length_size: int | None) -> int | None:
    """The NAL header byte of the first coded slice (types 1 and 5) in an access unit."""
    return next((h for h in _nal_headers(payload, length_size) if h & 0x1F in (1, 5)), None)


# ---------------------------------------------------------------------------------------------
# decord
# ---------------------------------------------------------------------------------------------

class DecordVideo:
    def __init__(self, data: bytes, resize: tuple[int, int] | int = (-1, -1), num_threads: int = 0):
        if isinstance(resize, int):  # a short side: the source size first, from the stream
            resize = scaled_size(*_video_size(data), resize)
        self._reader = open_video(data, resize[0], resize[1], num_threads)
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())

    def keyframes(self) -> list[int]:
        return [int(k) for k in self._reader.get_key_indices()]

    def close(self) -> None:
        del self._reader

    def frames(self, clip: list[int]) -> np.ndarray:
        run = self._reader.get_batch(list(range(clip[0], clip[-1] + 1))).asnumpy()
        return run[np.asarray(clip) - clip[0]]


def _video_size(data: bytes) -> tuple[int, int]:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            ctx = container.streams.video[0].codec_context
            return ctx.width, ctx.height
    except (av.error.FFmpegError, IndexError) as exc:
        raise UndecodableVideo(f"segment is not decodable video: {_first_line(str(exc)) or 'no video stream'}") from None


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
    """A decord ``VideoReader`` on the segment (TS remuxed first)."""
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


def _first_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[0][-200:] if lines else "unknown error"
