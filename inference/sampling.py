"""Which frames of a segment form the I3D clip(s). One implementation, used by the endpoint,
the reference path in benchmarks and the training datasets.

The default follows GluonCV's validation sampling (VideoClsCustom._sample_val_indices with
``num_segments=clips``): each clip is ``frames`` frames ``stride`` apart, and clips are spread
evenly over the segment, a single clip sitting in the middle. The stride must match the one the
model was trained with (32 frames × stride 2 ≈ 2.1 s at 30 fps for Kinetics I3D): stretching one
clip over the whole 10 s segment would show the network motion 4–5× faster than it learned.
More of the segment is covered by more clips (their logits are averaged), at linear model cost.

``fps``, when the model card gives one, is the frame rate its ``stride`` was learned at
(DeepMind's Kinetics I3D: consecutive frames at 25 fps): on a faster stream the stride grows in
proportion (50 or 60 fps: every second frame), so the network sees motion at the speed it
learned; 24–30 fps streams keep the stride (``for_rate``).

``snap_to_keyframe`` moves each clip's start to a keyframe at most two sampling steps away
(``2 * stride`` frames, 0.13 s at 30 fps for I3D) when one exists: decoding then starts exactly
where the clip does instead of decoding and discarding up to a GOP of frames before it (~35% of
the decode time for 2 s GOPs). A live encoder's keyframes sit on round times, so a 10 s segment's
centered start (frame 118) snaps to 120; a wider window would change what the model sees and
with it the predictions (a 14-frame snap on 2 s clips changed 9% of them against GluonCV's
sampling; with this window they agree, benchmarks/agreement.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from clipwatch.errors import VideoTooShort


@dataclass(frozen=True)
class ClipSampler:
    frames: int = 32
    stride: int = 2
    clips: int = 1
    snap_to_keyframe: bool = True
    fps: float | None = None  # the frame rate ``stride`` refers to; None: any stream's own

    def for_rate(self, video_fps: float) -> "ClipSampler":
        """This sampler for a stream of ``video_fps`` frames a second."""
        if not self.fps or not video_fps:
            return self
        stride = max(1, round(self.stride * video_fps / self.fps))
        return self if stride == self.stride else replace(self, stride=stride, fps=None)

    @property
    def max_snap(self) -> int:
        """How far (frames) a clip start may move to reach a keyframe."""
        return 2 * self.stride

    @property
    def span(self) -> int:
        """Frames from a clip's first sampled frame to its last, inclusive."""
        return (self.frames - 1) * self.stride + 1

    def _check_length(self, num_frames: int) -> None:
        if num_frames < self.span:
            raise VideoTooShort(
                f"video has {num_frames} frames; a clip of {self.frames} frames "
                f"{self.stride} apart needs {self.span}")

    def starts(self, num_frames: int, keyframes: Sequence[int] = (), rng=None) -> list[int]:
        """Clip start frames: evenly spread (validation, serving), or with ``rng`` one random
        start in each of ``clips`` equal sections (GluonCV's training sampling)."""
        self._check_length(num_frames)
        if rng is not None:
            section = (num_frames - self.span + 1) / self.clips
            return [int(section * i) + int(rng.integers(max(int(section), 1))) for i in range(self.clips)]
        skip_length = self.frames * self.stride  # GluonCV's skip_length = new_length * new_step
        if num_frames > self.clips + skip_length - 1:
            tick = (num_frames - skip_length + 1) / self.clips
            starts = [int(tick / 2.0 + tick * i) for i in range(self.clips)]
        else:  # barely longer than one clip: GluonCV starts every clip at frame 0
            starts = [0] * self.clips
        if self.snap_to_keyframe and keyframes:
            starts = [self._snap(s, num_frames, keyframes) for s in starts]
        return starts

    def _snap(self, start: int, num_frames: int, keyframes: Sequence[int]) -> int:
        fits = [k for k in keyframes if k + self.span <= num_frames and abs(k - start) <= self.max_snap]
        return min(fits, key=lambda k: (abs(k - start), k)) if fits else start

    def indices(self, num_frames: int, keyframes: Sequence[int] = (), rng=None) -> list[list[int]]:
        """Frame indices of each clip."""
        return [list(range(s, s + self.span, self.stride))
                for s in self.starts(num_frames, keyframes, rng)]
