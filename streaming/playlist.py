"""An HLS playlist reload, parsed with the ``m3u8`` package into what a follower needs.

Beyond the plain MPEG-TS live playlist: fMP4/CMAF segments (``EXT-X-MAP`` names the init
section each media segment needs, per discontinuity), ``EXT-X-BYTERANGE`` segments (slices of
one file), ``EXT-X-KEY`` encryption, and low-latency HLS, whose partial segments (``EXT-X-PART``)
are ignored: only complete segments are followed, the parts' latency gain is not worth a
second code path for 10 s classification windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import m3u8

from .sources import FetchError, join

# The model resizes frames to a short side of 256 px: a variant at least that high loses
# nothing, and a bigger one only costs download and decode time.
MODEL_SHORT_SIDE = 256


ByteRange = tuple[int, int]  # (length, offset) in bytes


@dataclass(frozen=True)
class Section:
    """An init section (EXT-X-MAP) or a key (EXT-X-KEY) location."""
    uri: str
    byterange: ByteRange | None = None


@dataclass(frozen=True)
class Key:
    method: str  # AES-128 is decrypted; SAMPLE-AES and DRM (other KEYFORMATs) are refused
    uri: str | None
    iv: bytes | None  # 16 bytes; None: the media sequence number, as RFC 8216 says
    keyformat: str = "identity"


@dataclass(frozen=True)
class Entry:
    media_sequence: int
    uri: str  # absolute (resolved against the playlist)
    listed_uri: str
    duration: float
    discontinuity: bool
    program_date_time: float | None  # epoch seconds
    byterange: ByteRange | None = None
    init: Section | None = None  # fMP4: the section to put in front of the segment
    key: Key | None = None  # None or METHOD=NONE: not encrypted


@dataclass(frozen=True)
class MediaPlaylist:
    location: str
    target_duration: float
    media_sequence: int
    entries: tuple[Entry, ...]
    ended: bool

    @property
    def last_sequence(self) -> int:
        return self.entries[-1].media_sequence if self.entries else self.media_sequence - 1


@dataclass(frozen=True)
class Variant:
    uri: str
    bandwidth: int
    height: int | None
    codecs: str = ""  # as CODECS lists them; empty when the playlist does not say

    @property
    def has_video(self) -> bool:
        """False for an audio-only variant (CODECS lists only audio codecs)."""
        if not self.codecs:
            return True  # unknown: assume video, as players do
        return any(c.strip().split(".")[0] in VIDEO_CODECS for c in self.codecs.split(","))


VIDEO_CODECS = {"avc1", "avc3", "hvc1", "hev1", "dvh1", "dvhe", "av01", "vp09", "vp8", "mp4v"}


def _byterange(spec: str | None, uri: str, ends: dict[str, int]) -> ByteRange | None:
    """``length[@offset]``; without an offset the range follows the previous one of the URI."""
    if not spec:
        return None
    length, _, offset = spec.partition("@")
    start = int(offset) if offset else ends.get(uri, 0)
    ends[uri] = start + int(length)
    return int(length), start


def _key(key, location: str) -> Key | None:
    if key is None or (key.method or "NONE").upper() == "NONE":
        return None
    iv = bytes.fromhex(key.iv[2:].rjust(32, "0")) if key.iv else None
    return Key(key.method.upper(), join(location, key.uri) if key.uri else None, iv,
               (key.keyformat or "identity").lower())


def parse(data: bytes, location: str) -> MediaPlaylist | list[Variant]:
    """A media playlist, or a master playlist's variants. Raises FetchError(not_hls)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FetchError(location, "not_hls", "not an HLS playlist (binary content)") from None
    if not text.lstrip().startswith("#EXTM3U"):
        first = text.strip().splitlines()[0][:60] if text.strip() else "(empty)"
        raise FetchError(location, "not_hls", f"not an HLS playlist: line 1 is {first!r}, expected #EXTM3U")
    try:
        pl = m3u8.loads(text)
    except Exception as exc:  # m3u8 raises plain exceptions on malformed tags
        raise FetchError(location, "not_hls", f"malformed HLS playlist: {exc}") from None
    if pl.is_variant:
        return [Variant(join(location, p.uri), p.stream_info.bandwidth or 0,
                        p.stream_info.resolution[1] if p.stream_info.resolution else None,
                        p.stream_info.codecs or "")
                for p in pl.playlists]
    first = pl.media_sequence or 0
    ends: dict[str, int] = {}
    entries = []
    try:
        for i, s in enumerate(pl.segments):
            if not s.uri:  # LL-HLS: the segment being written, so far only parts
                continue
            uri = join(location, s.uri)
            init = None
            if s.init_section is not None:
                init_uri = join(location, s.init_section.uri)
                init = Section(init_uri, _byterange(s.init_section.byterange, init_uri, {}))
            entries.append(Entry(
                first + i, uri, s.uri, float(s.duration or 0.0), bool(s.discontinuity),
                s.current_program_date_time.timestamp() if s.current_program_date_time else None,
                _byterange(s.byterange, uri, ends), init, _key(s.key, location)))
    except ValueError as exc:  # a byte range or IV that is not a number
        raise FetchError(location, "not_hls", f"malformed HLS playlist: {exc}") from None
    return MediaPlaylist(location, float(pl.target_duration or 10), first, tuple(entries), bool(pl.is_endlist))


def choose_variant(variants: list[Variant], choice: str = "auto") -> Variant:
    """``auto``: the smallest variant at least MODEL_SHORT_SIDE high (else the largest);
    ``highest`` / ``lowest`` bandwidth; or an index into the master playlist."""
    if not variants:
        raise ValueError("master playlist lists no variants")
    video = [v for v in variants if v.has_video]
    if not video:
        raise ValueError("the master playlist lists only audio variants: there is no video to classify")
    if len(video) < len(variants) and not choice.isdigit():
        variants = video  # an audio-only rendition is never the one to follow
    by_bw = sorted(variants, key=lambda v: v.bandwidth)
    if choice == "highest":
        return by_bw[-1]
    if choice == "lowest":
        return by_bw[0]
    if choice.isdigit():
        index = int(choice)
        if index >= len(variants):
            raise ValueError(f"variant {index} does not exist: the master playlist lists {len(variants)}")
        if not variants[index].has_video:
            raise ValueError(f"variant {index} is audio only ({variants[index].codecs}): there is no video to classify")
        return variants[index]
    if choice != "auto":
        raise ValueError(f"unknown variant choice {choice!r}: auto, highest, lowest or an index")
    tall = [v for v in by_bw if v.height and v.height >= MODEL_SHORT_SIDE]
    return tall[0] if tall else by_bw[-1]
