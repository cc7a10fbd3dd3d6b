"""Proposed segments for the reviewer: where the model thinks each activity starts and stops.

A reviewer who corrects a few boundaries and a label works faster than one who draws every
segment from nothing, and the model can say where its answer changes. Windows of the model's own
clip (``frames`` × ``stride``: the span it learned on, so it sees motion at the speed it was
trained at) slide over the segment a quarter span apart; each is classified by the same
preprocessing and network as the prediction. Consecutive windows with one label form a run;
runs too short to be an activity of their own are smoothed away (``smooth``). A boundary sits
between the centres of the last window of one run and the first of the next, where the two
labels' probabilities cross (``boundary``), on a frame; where the picture cuts within half a
span of it (a camera switch), on the cut (``snap_to_cut``). Each proposal's confidence is the
mean probability of its label over its windows.

Every frame any window needs is decoded once (windows overlap), then the windows are cut from
them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from clipwatch.errors import ClipwatchError
from clipwatch.records import Presegmentation, ProposedSegment, WindowScore

from .decode import DEFAULT_DECODER, frame_source
from .model import InputSpec
from .preprocess import center_crop_clips, normalize_clips
from .scoring import softmax

Infer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
# Windows a quarter span apart. A change between two activities is straddled by the windows
# whose span holds it: up to HOPS_PER_SPAN of them, so a run must be longer than that to be an
# activity of its own. Measured with benchmarks/presegment_effort.py (README: "What proposals save").
HOPS_PER_SPAN = 4
MIN_WINDOWS = HOPS_PER_SPAN + 1
# At most this many windows a segment (wider hops beyond): the work stays bounded whatever the
# segment's length or the model's span.
MAX_WINDOWS = 48
# A cut: a frame-to-frame picture change at least CUT_RATIO times the clip's median one and
# CUT_LEVEL grey levels on average (sensor noise and motion stay well under both).
CUT_RATIO, CUT_LEVEL = 4.0, 12.0


def window_starts(num_frames: int, span: int, hops_per_span: int = HOPS_PER_SPAN,
                  max_windows: int = MAX_WINDOWS) -> list[int]:
    """First frames of windows ``span`` frames long, ``span / hops_per_span`` apart (or wider,
    to keep to ``max_windows``), the last one ending on the segment's last frame."""
    if num_frames < span:
        return []
    hop = max(1, span // hops_per_span, -(-(num_frames - span) // (max_windows - 1)))
    starts = list(range(0, num_frames - span + 1, hop))
    if starts[-1] != num_frames - span:
        starts.append(num_frames - span)
    return starts


def _runs(labels: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) window indices of each run of one label."""
    edges = [0, *(np.flatnonzero(labels[1:] != labels[:-1]) + 1).tolist(), len(labels)]
    return [(a, b - 1) for a, b in zip(edges[:-1], edges[1:])]


def smooth(probs: np.ndarray, min_windows: int = MIN_WINDOWS) -> np.ndarray:
    """Window labels without runs shorter than ``min_windows``, weakest first. A short run
    between two different activities is what the windows straddling the change look like (a
    clip half one thing, half another: the model often calls it a third), so it is split
    between them at its middle, where the change is; a short run inside one activity, or at the
    clip's edge, takes the label its neighbours' explain best."""
    labels = probs.argmax(axis=1)
    while True:
        runs = _runs(labels)
        short = [i for i, (a, b) in enumerate(runs) if b - a + 1 < min_windows]
        if len(runs) < 2 or not short:
            return labels
        i = min(short, key=lambda k: probs[runs[k][0]:runs[k][1] + 1, labels[runs[k][0]]].mean())
        a, b = runs[i]
        neighbours = [labels[runs[j][0]] for j in (i - 1, i + 1) if 0 <= j < len(runs)]
        if len(neighbours) == 2 and neighbours[0] != neighbours[1]:
            middle = (a + b + 1) // 2
            labels[a:middle], labels[middle:b + 1] = neighbours
        else:
            labels[a:b + 1] = max(neighbours, key=lambda c: probs[a:b + 1, c].mean())


def boundary(probs: np.ndarray, centres: list[float], labels: np.ndarray, a: int) -> int:
    """The frame where window ``a``'s label gives way to window ``a + 1``'s: where the
    difference of their two probabilities crosses zero between the windows' centres (a window
    straddling the change holds both, in proportion), else halfway."""
    ca, cb = labels[a], labels[a + 1]
    da = probs[a, ca] - probs[a, cb]
    db = probs[a + 1, ca] - probs[a + 1, cb]
    share = da / (da - db) if da > 0 > db else 0.5
    return int(round(centres[a] + share * (centres[a + 1] - centres[a])))


def picture_changes(frames: np.ndarray, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Where the picture changes abruptly: the mean absolute difference of consecutive decoded
    frames (green channel, every 4th pixel), placed on the frame between them."""
    grey = frames[:, ::4, ::4, 1].astype(np.int16)
    diffs = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))
    at = (np.asarray(indices[:-1]) + np.asarray(indices[1:]) + 1) // 2
    return at, diffs


def snap_to_cut(frame: int, changes: tuple[np.ndarray, np.ndarray], radius: int) -> int:
    """``frame``, or the cut within ``radius`` of it: a picture change far above the clip's
    usual frame-to-frame change (a camera switch, a scene change) is where an activity seen by
    windows a span wide changed, to the frame. Gradual changes, the usual case within one
    shot, leave the model's boundary as it is."""
    at, diffs = changes
    if len(diffs) < 3:
        return frame
    near = np.flatnonzero(np.abs(at - frame) <= radius)
    if not len(near):
        return frame
    peak = near[np.argmax(diffs[near])]
    usual = float(np.median(diffs))
    return int(at[peak]) if diffs[peak] >= max(CUT_RATIO * usual, CUT_LEVEL) else frame


def proposals(probs: np.ndarray, starts: list[int], span: int, num_frames: int, fps: float,
              classes: list[str], min_windows: int = MIN_WINDOWS,
              changes: tuple[np.ndarray, np.ndarray] | None = None) -> list[ProposedSegment]:
    """Runs of smoothed window labels as segments covering the whole clip, boundaries on frames
    (on a cut near the model's boundary, given the clip's ``picture_changes``)."""
    labels = smooth(probs, min_windows)
    centres = [s + (span - 1) / 2 for s in starts]
    runs = _runs(labels)
    cuts = [boundary(probs, centres, labels, b) for _, b in runs[:-1]]
    if changes is not None:
        snapped = [snap_to_cut(c, changes, span // 2) for c in cuts]
        # two boundaries never share a cut, nor swap places
        cuts = [x if 0 < x < num_frames and (k == 0 or x > snapped[k - 1]) else c
                for k, (x, c) in enumerate(zip(snapped, cuts))]
    out = []
    for k, (a, b) in enumerate(runs):
        first = 0 if k == 0 else cuts[k - 1]
        last = num_frames if k == len(runs) - 1 else cuts[k]
        c = int(labels[a])
        out.append(ProposedSegment(start=round(first / fps, 3), end=round(last / fps, 3), label=classes[c],
                                   confidence=round(float(probs[a:b + 1, c].mean()), 4)))
    return out


def presegment(data: bytes, infer: Infer, classes: list[str], spec: InputSpec, temperature: float = 1.0,
               decoder: str = DEFAULT_DECODER, max_batch: int = 4, min_windows: int = MIN_WINDOWS,
               hops_per_span: int = HOPS_PER_SPAN) -> Presegmentation:
    """Window scores and proposals for one segment; a segment the model cannot read gets none,
    with the reason."""
    try:
        video = frame_source(data, spec.resize, decoder=decoder)
    except ClipwatchError as exc:
        return Presegmentation(note=f"no proposals: {exc.message}")
    try:
        sampler = spec.sampler(1, snap_to_keyframe=False).for_rate(video.fps)
        n, fps, span = video.num_frames, video.fps, sampler.span
        starts = window_starts(n, span, hops_per_span)
        if not starts:
            return Presegmentation(note=f"no proposals: the segment has {n} frames; one window of the "
                                        f"model needs {span}")
        offsets = np.arange(0, span, sampler.stride)
        needed = sorted({int(s + o) for s in starts for o in offsets})
        try:
            frames = video.frames(needed)
        except ClipwatchError as exc:
            return Presegmentation(note=f"no proposals: {exc.message}")
        except Exception as exc:  # noqa: BLE001 -- libav's errors, as the decoders raise them
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return Presegmentation(note=f"no proposals: could not decode the windows' frames: {first}")
    finally:
        video.close()
    position = np.full(n, -1)
    position[needed] = np.arange(len(needed))
    probs = []
    for i in range(0, len(starts), max_batch):
        chunk = starts[i:i + max_batch]
        clips = frames[[position[s + offsets] for s in chunk]]
        batch = normalize_clips(center_crop_clips(clips, spec.crop), spec.crop, spec.mean, spec.std)
        probs.append(softmax(infer(batch)[0], temperature))
    probs = np.concatenate(probs)
    top = probs.argmax(axis=1)
    changes = picture_changes(frames, needed)
    windows = [WindowScore(start=round(s / fps, 3), end=round((s + span) / fps, 3), label=classes[c],
                           confidence=round(float(probs[k, c]), 4)) for k, (s, c) in enumerate(zip(starts, top))]
    return Presegmentation(windows=windows,
                           proposals=proposals(probs, starts, span, n, fps, classes, min_windows, changes))
