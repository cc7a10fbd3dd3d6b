"""An HLS playlist reload, parsed with the ``m3u8`` package into what a follower needs."""

from __future__ import annotations

from dataclasses import dataclass

import m3u8

from .sources import FetchError, join

# The model resizes frames to a short side of 256 px: a variant at least that high loses
# nothing, and a bigger one only costs download and decode time.
MODEL_SHORT_SIDE = 256


@dataclass(frozen=True)
class Entry:
    media_sequence: int
    uri: str  # absolute (resolved against the playlist)
    listed_uri: str
    duration: float
    discontinuity: bool
    program_date_time: float | None  # epoch seconds


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
                        p.stream_info.resolution[1] if p.stream_info.resolution else None)
                for p in pl.playlists]
    first = pl.media_sequence or 0
    entries = tuple(
        Entry(first + i, join(location, s.uri), s.uri, float(s.duration or 0.0), bool(s.discontinuity),
              s.current_program_date_time.timestamp() if s.current_program_date_time else None)
        for i, s in enumerate(pl.segments))
    return MediaPlaylist(location, float(pl.target_duration or 10), first, entries, bool(pl.is_endlist))


def choose_variant(variants: list[Variant], choice: str = "auto") -> Variant:
    """``auto``: the smallest variant at least MODEL_SHORT_SIDE high (else the largest);
    ``highest`` / ``lowest`` bandwidth; or an index into the master playlist."""
    if not variants:
        raise ValueError("master playlist lists no variants")
    by_bw = sorted(variants, key=lambda v: v.bandwidth)
    if choice == "highest":
        return by_bw[-1]
    if choice == "lowest":
        return by_bw[0]
    if choice.isdigit():
        index = int(choice)
        if index >= len(variants):
            raise ValueError(f"variant {index} does not exist: the master playlist lists {len(variants)}")
        return variants[index]
    if choice != "auto":
        raise ValueError(f"unknown variant choice {choice!r}: auto, highest, lowest or an index")
    tall = [v for v in by_bw if v.height and v.height >= MODEL_SHORT_SIDE]
    return tall[0] if tall else by_bw[-1]
