"""Synthetic activity clips and a synthetic live HLS stream, rendered here and encoded by ffmpeg
to real H.264, so the classifier can be trained, evaluated and demonstrated without downloading
any video.

Seven activities (``ACTIVITIES``) are defined by how something moves, never by how it looks:
every clip draws a new background (solid, gradient, blurred noise, rectangles), object shape,
colour or stripes, size and speed, and adds per-frame sensor noise and camera shake. A small 3D
CNN can then only tell the classes apart by their motion, which is what has to carry over to
real streams.

- ``render_frames`` renders one clip as RGB frames; ``encode`` turns frames into an H.264 file.
- ``make_dataset`` writes a labelled dataset with UCF101/GluonCV-style list files.
- ``write_live_stream`` runs ffmpeg's HLS muxer like a live encoder (a sliding playlist of
  ``.ts`` segments) on a seeded schedule of activities, including deliberately ambiguous
  stretches, and writes each segment's ground truth as the segment is completed.

Rendering is a background copy, one small warp per object, one camera warp, a gain and a noise
add per frame, all OpenCV on uint8: a 2 s 256×144 clip renders in well under 0.1 s; starting
ffmpeg (~0.1 s) costs more than encoding it.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
from rich.progress import Progress

from clipwatch.testmedia import ffmpeg

ACTIVITIES: tuple[str, ...] = ("moving_left", "moving_right", "bouncing", "rotating", "zooming_in",
                               "flickering_light", "static_scene")

HFLIP: dict[str, str] = {a: a for a in ACTIVITIES} | {"moving_left": "moving_right",
                                                      "moving_right": "moving_left"}

def _ring(radii: list[float]) -> np.ndarray:
    """A polygon through points at ``radii`` from the centre, evenly spaced around it."""
    a = np.linspace(0, 2 * np.pi, len(radii), endpoint=False)
    return np.stack([np.multiply(radii, np.sin(a)), -np.multiply(radii, np.cos(a))], 1)


# Unit-size polygons centred on the origin (y down). The cross is a Latin cross and the
# triangle isosceles, so that, like the bar, they look different after a quarter turn.
_SHAPES: dict[str, list[np.ndarray]] = {
    "circle": [_ring([0.5] * 48)],
    "square": [np.array([(-0.4, -0.4), (0.4, -0.4), (0.4, 0.4), (-0.4, 0.4)])],
    "triangle": [np.array([(0.0, -0.5), (0.35, 0.42), (-0.35, 0.42)])],
    "star": [_ring([0.5, 0.2] * 5)],
    "cross": [np.array([(-0.09, -0.5), (0.09, -0.5), (0.09, 0.5), (-0.09, 0.5)]),
              np.array([(-0.32, -0.26), (0.32, -0.26), (0.32, -0.08), (-0.32, -0.08)])],
    "bar": [np.array([(-0.5, -0.11), (0.5, -0.11), (0.5, 0.11), (-0.5, 0.11)])],
}
_ROTATABLE = ("bar", "triangle", "cross")
_REACH = 0.58  # how far (in object sizes) any shape extends from its centre

# Objects that carry the activity themselves: a tiny, fast or second object only makes a
# segment ambiguous for these.
_OBJECT_MOTIONS = ("moving_left", "moving_right", "bouncing", "rotating")

# (note, probability) of each kind of run in the live schedule.
RUN_KINDS = (("", 0.7), ("two activities", 0.1), ("tiny object", 0.1), ("fast object", 0.1))

Pose = Callable[[float], tuple[float, float, float, float]]  # t → x, y, angle (deg), scale


# --------------------------------------------------------------------------------- rendering

@dataclass
class _Actor:
    rgba: np.ndarray  # (S, S, 4) float32, colour premultiplied by alpha, so edges blend cleanly
    pose: Pose


@dataclass
class _Scene:
    background: np.ndarray  # (H, W, 3) uint8
    actors: list[_Actor]
    zoom: Callable[[float], tuple[float, float, float]]  # t → camera scale about (x, y)
    gain: Callable[[float], float]
    shake: Callable[[float], tuple[float, float]]  # t → camera offset (dx, dy), pixels
    noise: float  # sensor noise sigma, grey levels
    speed: float
    fps: int
    rng: np.random.Generator

    def frames(self, n: int) -> Iterator[np.ndarray]:
        """``n`` frames, (H, W, 3) uint8 RGB. Time is centred on the middle frame so objects
        crossing the frame are near its centre mid-clip, where the model's crop looks."""
        for i in range(n):
            yield self._frame(self.speed * (i - n / 2) / self.fps)

    def _frame(self, t: float) -> np.ndarray:
        h, w = self.background.shape[:2]
        frame = self.background.copy()
        for actor in self.actors:
            _paste(frame, actor.rgba, *actor.pose(t))
        camera = self._camera(t)
        # Shake alone moves by whole pixels, which nearest-neighbour copies exactly, 2.5× faster.
        interpolation = cv2.INTER_NEAREST if camera[0, 0] == 1 else cv2.INTER_LINEAR
        frame = cv2.warpAffine(frame, camera, (w, h), flags=interpolation, borderMode=cv2.BORDER_REFLECT_101)
        gain = self.gain(t)
        if gain != 1.0:
            frame = cv2.convertScaleAbs(frame, alpha=gain)  # saturates, as a sensor does
        return cv2.add(frame, self._noise_frame(h, w), dtype=cv2.CV_8U)

    def _camera(self, t: float) -> np.ndarray:
        scale, cx, cy = self.zoom(t)
        dx, dy = np.round(self.shake(t))
        return np.float32([[scale, 0, (1 - scale) * cx + dx], [0, scale, (1 - scale) * cy + dy]])

    def _noise_frame(self, h: int, w: int) -> np.ndarray:
        """Fresh Gaussian noise, the same in the three channels: H.264's 4:2:0 keeps one chroma
        sample per four pixels, so per-channel noise would mostly be averaged away anyway, and
        drawing a third of the normals halves the cost of the rendering. OpenCV draws them
        ~6× faster than numpy; its generator is per thread, and seeding it from the scene's
        generator every frame keeps clips deterministic."""
        noise = np.empty((h, w), np.int16)
        cv2.setRNGSeed(int(self.rng.integers(2**31)))
        cv2.randn(noise, 0, self.noise)
        return cv2.merge([noise] * 3)


def render_frames(activity: str, rng: np.random.Generator, num_frames: int,
                  size: tuple[int, int] = (256, 144), fps: int = 30, *, scale: float = 1.0,
                  speed: float = 1.0) -> np.ndarray:
    """One clip of ``activity``: (T, H, W, 3) uint8 RGB, ``size`` = (width, height). ``scale``
    multiplies the object's random size and ``speed`` the rate of its activity."""
    scene = _scene((activity,), rng, size, fps, scale=scale, speed=speed)
    out = np.empty((num_frames, size[1], size[0], 3), np.uint8)
    for i, frame in enumerate(scene.frames(num_frames)):
        out[i] = frame
    return out


def _scene(activities: tuple[str, ...], rng: np.random.Generator, size: tuple[int, int], fps: int,
           *, scale: float, speed: float, background: np.ndarray | None = None) -> _Scene:
    """A scene showing every one of ``activities`` at once, one object each (on ``background``
    when given: the same place, something new happening in it)."""
    unknown = set(activities) - set(ACTIVITIES)
    if unknown:
        raise ValueError(f"unknown activities {sorted(unknown)}; known: {ACTIVITIES}")
    w, h = size
    background = _background(rng, w, h) if background is None else background
    zoom, gain = _no_zoom, _steady_light
    if "flickering_light" in activities:
        gain = _flicker(rng)
    # Zooming the whole scene would zoom every object too: next to another activity, only the
    # object zooms.
    scene_zoom = activities == ("zooming_in",) and rng.random() < 0.5
    if scene_zoom:
        zoom = _camera_zoom(rng, w, h)
    actors = [_actor("static_scene" if scene_zoom else a, rng, background, scale) for a in activities]
    return _Scene(background, actors, zoom, gain, shake=_handheld_shake(rng, 0.02 * w),
                  noise=rng.uniform(2, 6), speed=speed, fps=fps, rng=rng)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    kind = rng.integers(5)
    c0, c1 = rng.integers(0, 256, (2, 3)).astype(np.float32)
    if kind == 0:
        img = np.broadcast_to(c0, (h, w, 3))
    elif kind in (1, 2):  # vertical or horizontal gradient
        ramp = np.linspace(0, 1, h if kind == 1 else w, dtype=np.float32)
        ramp = ramp[:, None, None] if kind == 1 else ramp[None, :, None]
        img = np.broadcast_to(c0 + (c1 - c0) * ramp, (h, w, 3))
    elif kind == 3:  # smooth blotches: coarse noise scaled up, then blurred
        coarse = rng.random((max(2, h // 12), max(2, w // 12), 1), dtype=np.float32)
        field = cv2.GaussianBlur(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 2)
        img = c0 + (c1 - c0) * np.clip(field, 0, 1)[..., None]
    else:
        img = np.empty((h, w, 3), np.float32)
        img[:] = c0
        for _ in range(rng.integers(4, 12)):
            x0, x1 = np.sort(rng.integers(0, w, 2))
            y0, y1 = np.sort(rng.integers(0, h, 2))
            img[y0:y1 + 1, x0:x1 + 1] = rng.integers(0, 256, 3)
    return np.ascontiguousarray(img, dtype=np.uint8)


def _actor(activity: str, rng: np.random.Generator, background: np.ndarray, scale: float) -> _Actor:
    h, w = background.shape[:2]
    shapes = _ROTATABLE if activity == "rotating" else tuple(_SHAPES)
    shape = shapes[rng.integers(len(shapes))]
    # A zooming object is drawn at its largest size and scaled down, so it never gets blurry.
    # A rotating one is at least 0.28 of the height: the rotatable shapes are thin (a cross's
    # arms are 0.18 of its size), and at 0.2 of 144 px, seen by the model at 96 px, the arms
    # are ~2 px wide; such clips were 10 of the 18 test errors of a model at 93% top-1, all
    # taken for static scenes. (Live mode's ``scale`` still makes tiny ones: ambiguous by design.)
    largest = {"zooming_in": (0.35, 0.6), "rotating": (0.28, 0.45)}.get(activity, (0.2, 0.4))
    size = max(3.0, rng.uniform(*largest) * h * scale)
    rgba = _sprite(shape, size, _contrasting_colour(rng, background), rng)
    return _Actor(rgba, _POSES[activity](rng, w, h, size))


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour far enough from the background's mean that the object stays visible.
    Whatever the mean, over half of all colours are far enough, so this ends quickly."""
    mean = background.reshape(-1, 3).mean(0)
    while True:
        colour = rng.integers(0, 256, 3).astype(np.float32)
        if np.linalg.norm(colour - mean) > 120:
            return colour


def _sprite(shape: str, size: float, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The object on a transparent square, (S, S, 4) float32 with premultiplied colour."""
    side = int(math.ceil(2 * _REACH * size)) + 2
    mask = np.zeros((side, side), np.uint8)
    polygons = [np.round((p * size + side / 2) * 16).astype(np.int32) for p in _SHAPES[shape]]
    cv2.fillPoly(mask, polygons, 255, cv2.LINE_AA, shift=4)  # shift=4: 1/16-pixel vertices
    alpha = mask.astype(np.float32)[..., None] / 255
    texture = np.broadcast_to(colour, (side, side, 3))
    if rng.random() < 0.5:  # stripes of a second colour, random period and direction
        angle, period = rng.uniform(0, np.pi), rng.uniform(0.1, 0.3) * size + 2
        yy, xx = np.mgrid[0:side, 0:side]
        stripe = ((xx * np.cos(angle) + yy * np.sin(angle)) // period % 2).astype(bool)
        texture = np.where(stripe[..., None], rng.integers(0, 256, 3), texture)
    return np.concatenate([texture * alpha, alpha], axis=2).astype(np.float32)


def _paste(frame: np.ndarray, rgba: np.ndarray, x: float, y: float, angle: float, scale: float) -> None:
    """Draw the sprite onto ``frame`` centred at (x, y), rotated and scaled, warping only the
    rectangle it covers."""
    h, w = frame.shape[:2]
    c = rgba.shape[0] / 2
    m = cv2.getRotationMatrix2D((c, c), angle, scale)
    m[:, 2] += (x - c, y - c)
    corners = np.array([[0, 0, 1], [2 * c, 0, 1], [0, 2 * c, 1], [2 * c, 2 * c, 1]]) @ m.T
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int), (w, h))
    if x0 >= x1 or y0 >= y1:
        return  # entirely off-screen
    m[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(rgba, m, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR)
    roi = frame[y0:y1, x0:x1]
    blended = roi * (1 - warped[..., 3:]) + warped[..., :3]
    roi[:] = np.round(blended).astype(np.uint8)


# ------------------------------------------------------------- motions and lighting, over time

def _no_zoom(t: float) -> tuple[float, float, float]:
    return 1.0, 0.0, 0.0  # at scale 1 the centre does not matter


def _steady_light(t: float) -> float:
    return 1.0


def _sawtooth_growth(rng: np.random.Generator) -> tuple[float, Callable[[float], float]]:
    """Growth by a random 1.5–3× over each second, from 1 to that factor, restarting every
    second at a random phase; geometric, as an object approaching at constant speed appears."""
    growth, phase = rng.uniform(1.5, 3.0), rng.random()
    return growth, lambda t: growth ** ((t + phase) % 1.0)


def _camera_zoom(rng: np.random.Generator, w: int, h: int) -> Callable[[float], tuple[float, float, float]]:
    _, grow = _sawtooth_growth(rng)
    cx, cy = rng.uniform(0.4, 0.6) * w, rng.uniform(0.4, 0.6) * h
    return lambda t: (grow(t), cx, cy)


def _handheld_shake(rng: np.random.Generator, most: float) -> Callable[[float], tuple[float, float]]:
    """A hand-held camera's wobble: per axis, two sines of 0.5–4 Hz, up to ``most`` pixels.
    Smooth, as real shake is, and it averages out instead of drifting like a pan. (White
    per-frame jitter, as this was at first, is not what cameras do, and it made static scenes
    with strong jitter look like rotating objects to the model: 10 of 23 static test clips with
    jitter ≥ 1% of the width were misclassified, none below.)"""
    amplitude = rng.uniform(0, most)
    hz, phase = rng.uniform(0.5, 4, (2, 2)), rng.uniform(0, 2 * np.pi, (2, 2))
    weight = np.array([0.6, 0.4])

    def offset(t: float) -> tuple[float, float]:
        dx, dy = amplitude * (weight * np.sin(2 * np.pi * hz * t + phase)).sum(axis=1)
        return float(dx), float(dy)
    return offset


def _flicker(rng: np.random.Generator) -> Callable[[float], float]:
    """Brightness swinging by ±30–60 %, as a smooth wave or an on/off toggle. A sine stays below
    6 Hz: the model samples every other frame (15 fps), and a sine near that rate's 7.5 Hz
    Nyquist limit comes out of the sampling with a slowly beating, at times vanishing,
    amplitude; a toggle stays a full-swing toggle up to 8 Hz."""
    depth, phase = rng.uniform(0.3, 0.6), rng.uniform(0, 2 * np.pi)
    if rng.random() < 0.5:
        hz = rng.uniform(2, 6)
        return lambda t: 1 + depth * math.sin(2 * np.pi * hz * t + phase)
    hz = rng.uniform(2, 8)
    return lambda t: 1 + depth * (1.0 if math.sin(2 * np.pi * hz * t + phase) >= 0 else -1.0)


def _still(rng: np.random.Generator, w: int, h: int, size: float) -> Pose:
    x, y, angle = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(0, 360)
    return lambda t: (x, y, angle, 1.0)


def _moving(rng: np.random.Generator, w: int, h: int, size: float, direction: int) -> Pose:
    """Across the frame at 0.3–0.8 widths a second, wrapping around: it leaves on one side and
    comes back on the other, so it is on screen most of the time."""
    v = direction * rng.uniform(0.3, 0.8) * w
    x_mid, y, angle = rng.uniform(0.4, 0.6) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(0, 360)
    reach = _REACH * size
    return lambda t: ((x_mid + v * t + reach) % (w + 2 * reach) - reach, y, angle, 1.0)


def _bouncing(rng: np.random.Generator, w: int, h: int, size: float) -> Pose:
    hz, phase = rng.uniform(1, 3), rng.uniform(0, np.pi)
    x, angle = rng.uniform(0.3, 0.7) * w, rng.uniform(0, 360)
    floor = rng.uniform(0.65, 0.8) * h
    height = min(rng.uniform(0.3, 0.5) * h, floor - 0.15 * h)
    return lambda t: (x, floor - height * abs(math.sin(np.pi * hz * t + phase)), angle, 1.0)


def _rotating(rng: np.random.Generator, w: int, h: int, size: float) -> Pose:
    x, y = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    deg_per_s, angle = rng.choice((-1, 1)) * rng.uniform(120, 400), rng.uniform(0, 360)
    return lambda t: (x, y, angle + deg_per_s * t, 1.0)


def _zooming(rng: np.random.Generator, w: int, h: int, size: float) -> Pose:
    x, y, angle = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h, rng.uniform(0, 360)
    largest, grow = _sawtooth_growth(rng)
    return lambda t: (x, y, angle, grow(t) / largest)  # the sprite is drawn at its largest


_POSES: dict[str, Callable[..., Pose]] = {
    "moving_left": partial(_moving, direction=-1),
    "moving_right": partial(_moving, direction=1),
    "bouncing": _bouncing,
    "rotating": _rotating,
    "zooming_in": _zooming,
    "flickering_light": _still,
    "static_scene": _still,
}


# ---------------------------------------------------------------------------------- encoding

def _check_even(size: tuple[int, int]) -> None:
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"H.264 yuv420p needs an even width and height, got {size[0]}×{size[1]}")


def _raw_input(size: tuple[int, int], fps: int) -> list[str]:
    return [ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
            "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}", "-r", str(fps), "-i", "pipe:0"]


def _h264(gop: int) -> list[str]:
    # A fixed GOP and no scene-cut keyframes, like a live encoder: a flicker would otherwise
    # put keyframes wherever the light toggles.
    return ["-an", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(gop),
            "-keyint_min", str(gop), "-sc_threshold", "0"]


def encode(frames: np.ndarray, out: Path, fps: int = 30, gop: int | None = None) -> Path:
    """Frames (T, H, W, 3) uint8 RGB → H.264 in MP4 or MPEG-TS, chosen by ``out``'s suffix."""
    out = Path(out)
    containers = {".mp4": "mp4", ".ts": "mpegts"}
    if out.suffix not in containers:
        raise ValueError(f"unsupported container {out.suffix!r}; use one of {sorted(containers)}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    _check_even((frames.shape[2], frames.shape[1]))
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = (_raw_input((frames.shape[2], frames.shape[1]), fps) + _h264(gop or 2 * fps)
           + ["-f", containers[out.suffix], str(out)])
    proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed to encode {out}: {proc.stderr.decode(errors='replace')}")
    return out


def write_activity_segment(out: Path, parts: list[tuple[str, float]], *, seed: int = 0,
                           size: tuple[int, int] = (256, 144), fps: int = 30, cuts: bool = False) -> list[dict]:
    """One segment showing ``parts`` ((activity, seconds), …) one after another, encoded to
    ``out`` (.ts or .mp4): in one place, a new object taking over at each change, or with
    ``cuts`` each part in a new scene (as when a camera switches). Returns the ground truth with
    frame-exact boundaries: what a reviewer should end up with."""
    rng = np.random.default_rng(seed)
    place = None if cuts else _background(rng, *size)
    frames, truth, first = [], [], 0
    for activity, seconds in parts:
        n = int(round(seconds * fps))
        scene = _scene((activity,), rng, size, fps, scale=1.0, speed=1.0, background=place)
        frames.append(np.stack(list(scene.frames(n))))
        truth.append({"label": activity, "start_frame": first, "end_frame": first + n,
                      "start": round(first / fps, 3), "end": round((first + n) / fps, 3)})
        first += n
    encode(np.concatenate(frames), out, fps)
    return truth


# ----------------------------------------------------------------------------------- dataset

def make_dataset(out: Path, clips_per_class: int, *, seed: int = 0, size: tuple[int, int] = (256, 144),
                 seconds: float = 2.0, fps: int = 30, split: tuple[float, float, float] = (0.7, 0.15, 0.15),
                 progress: bool = True) -> dict:
    """``clips_per_class`` clips of every activity in ``out/<activity>/<activity>_<i:04d>.mp4``,
    plus ``classes.txt`` and the list files ``train.txt``, ``val.txt``, ``test.txt``
    (``<relative path> <frames> <label index>`` a line, as GluonCV's VideoClsCustom reads).

    Clip ``i`` of a class is drawn from its own seed (seed, class, i), so the output does not
    depend on the order clips are made in, and clips are rendered in parallel. Clips are
    independent draws, so each class's split is simply its first, middle and last clips."""
    out = Path(out)
    _check_even(size)
    num_frames = round(seconds * fps)
    jobs = [(label, i) for label in range(len(ACTIVITIES)) for i in range(clips_per_class)]

    def make_clip(label: int, i: int) -> None:
        rng = np.random.default_rng([seed, label, i])
        frames = render_frames(ACTIVITIES[label], rng, num_frames, size, fps)
        encode(frames, out / _clip_path(label, i), fps)

    with Progress(disable=not progress) as bar, ThreadPoolExecutor(os.cpu_count()) as pool:
        task = bar.add_task(f"rendering {len(jobs)} clips", total=len(jobs))
        for future in as_completed([pool.submit(make_clip, *job) for job in jobs]):
            future.result()
            bar.advance(task)

    counts = _split_counts(clips_per_class, split)
    (out / "classes.txt").write_text("".join(f"{a}\n" for a in ACTIVITIES))
    first = 0
    for name, count in zip(("train", "val", "test"), counts):
        lines = [f"{_clip_path(label, i)} {num_frames} {label}\n"
                 for label in range(len(ACTIVITIES)) for i in range(first, first + count)]
        (out / f"{name}.txt").write_text("".join(lines))
        first += count
    return {"root": str(out), "classes": list(ACTIVITIES),
            "counts": {name: n * len(ACTIVITIES) for name, n in zip(("train", "val", "test"), counts)},
            "clips_per_class": clips_per_class, "frames": num_frames, "seconds": seconds, "fps": fps,
            "size": list(size), "seed": seed}


def _clip_path(label: int, i: int) -> str:
    return f"{ACTIVITIES[label]}/{ACTIVITIES[label]}_{i:04d}.mp4"


def _split_counts(n: int, split: tuple[float, float, float]) -> tuple[int, int, int]:
    """Clips per class in train, val and test; with 3 or more, each split gets at least one."""
    least = 1 if n >= 3 else 0
    total = sum(split)
    val = min(max(least, round(n * split[1] / total)), n - 2 * least)
    test = min(max(least, round(n * split[2] / total)), n - least - val)
    return n - val - test, val, test


# ------------------------------------------------------------------------------- live stream

@dataclass(frozen=True)
class _Run:
    """Consecutive segments showing one continuous scene."""
    activities: tuple[str, ...]  # the primary activity first
    note: str
    segments: int


def write_live_stream(out: Path, segments: int, *, seed: int = 0, size: tuple[int, int] = (640, 360),
                      fps: int = 30, segment_seconds: int = 10, list_size: int = 6,
                      realtime: bool = False, progress: bool = True,
                      run_kinds: tuple[tuple[str, float], ...] = RUN_KINDS) -> Path:
    """A live HLS stream in ``out``: ``live.m3u8``, a sliding window of ``list_size`` segments (0: all)
    ``seg_%05d.ts`` (older ones are deleted), and ``ground_truth.jsonl``, one line per segment,
    appended once the muxer has completed the segment. ``realtime`` paces the frames to the
    wall clock, as a live encoder receives them. ``run_kinds``: (note, probability) of each kind
    of run (``(("tiny object", 1.0),)``: a stream of hard cases only). Returns the playlist's path."""
    out = Path(out)
    _check_even(size)
    out.mkdir(parents=True, exist_ok=True)
    playlist = out / "live.m3u8"
    # A former run's playlist and segments would pass for this run's progress.
    for stale in [*out.glob("seg_*.ts*"), *out.glob("live.m3u8*")]:
        stale.unlink()
    rng = np.random.default_rng(seed)
    runs = _schedule(rng, segments, run_kinds)
    truth = _GroundTruth(out / "ground_truth.jsonl", _segment_truths(runs, segment_seconds))
    frames = (frame for run in runs
              for frame in _run_scene(run, rng, size, fps).frames(run.segments * segment_seconds * fps))
    proc = subprocess.Popen(_hls_command(out, size, fps, segment_seconds, list_size),
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with Progress(disable=not progress) as bar:
            task = bar.add_task(f"live stream: {segments} × {segment_seconds} s segments", total=segments)

            def report() -> None:
                bar.update(task, completed=truth.record_through(_last_listed(playlist)))

            _feed(proc, frames, fps, realtime, report)
            if _last_listed(playlist) != segments - 1:
                raise RuntimeError(f"expected {segments} segments, the playlist ends at {_last_listed(playlist)}")
            report()
    finally:
        if proc.poll() is None:  # stopped by an error of ours: do not leave the encoder running
            proc.kill()
            proc.wait()
    return playlist


def _feed(proc: subprocess.Popen, frames: Iterator[np.ndarray], fps: int, realtime: bool,
          after_each: Callable[[], None]) -> None:
    """Write every frame to ffmpeg's stdin, then wait for it to finish the stream."""
    start = time.monotonic()
    try:
        for i, frame in enumerate(frames):
            if realtime:
                time.sleep(max(0.0, start + i / fps - time.monotonic()))
            proc.stdin.write(frame)
            after_each()
        proc.stdin.close()
    except BrokenPipeError:
        pass  # ffmpeg stopped reading: its own message is raised below
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg's HLS muxer failed: {proc.stderr.read().decode(errors='replace')}")


def _hls_command(out: Path, size: tuple[int, int], fps: int, segment_seconds: int, list_size: int) -> list[str]:
    # Segments can only be cut at keyframes: every 2 s, or every 1 s for odd-length segments.
    gop = fps * math.gcd(2, segment_seconds)
    # temp_file: a segment appears under its final name only when complete, so a follower
    # watching the directory never reads half a segment.
    return (_raw_input(size, fps) + _h264(gop)
            + ["-f", "hls", "-hls_time", str(segment_seconds), "-hls_list_size", str(list_size),
               "-hls_flags", "delete_segments+temp_file", "-start_number", "0",
               "-hls_segment_filename", str(out / "seg_%05d.ts"), str(out / "live.m3u8")])


def _schedule(rng: np.random.Generator, segments: int, kinds=RUN_KINDS) -> list[_Run]:
    """Runs of 1–3 segments, the activity changing from run to run; some runs are ambiguous: two
    activities at once, a tiny object or a very fast one."""
    notes, weights = zip(*kinds)
    runs: list[_Run] = []
    left, previous = segments, None
    while left > 0:
        note = notes[rng.choice(len(notes), p=weights)]
        candidates = [a for a in (_OBJECT_MOTIONS if note else ACTIVITIES) if a != previous]
        primary = candidates[rng.integers(len(candidates))]
        activities = (primary,)
        if note == "two activities":
            others = [a for a in _OBJECT_MOTIONS + ("zooming_in",) if a != primary]
            activities += (others[rng.integers(len(others))],)
        length = min(int(rng.integers(1, 4)), left)
        runs.append(_Run(activities, note, length))
        left, previous = left - length, primary
    return runs


def _run_scene(run: _Run, rng: np.random.Generator, size: tuple[int, int], fps: int) -> _Scene:
    scale = rng.uniform(0.2, 0.35) if run.note == "tiny object" else 1.0
    speed = rng.uniform(2.5, 4.0) if run.note == "fast object" else 1.0
    return _scene(run.activities, rng, size, fps, scale=scale, speed=speed)


def _segment_truths(runs: list[_Run], segment_seconds: int) -> list[dict]:
    truths = []
    for run in runs:
        for _ in range(run.segments):
            n = len(truths)
            truths.append({"sequence": n, "file": f"seg_{n:05d}.ts", "label": run.activities[0],
                           "labels": list(run.activities), "ambiguous": bool(run.note), "note": run.note,
                           "start": n * segment_seconds, "duration": segment_seconds})
    return truths


class _GroundTruth:
    """Appends each segment's truth to the JSONL file once, in order, when it is completed."""

    def __init__(self, path: Path, truths: list[dict]):
        self.path, self.truths, self.recorded = path, truths, 0
        path.write_text("")

    def record_through(self, sequence: int) -> int:
        """Record every segment up to ``sequence``; returns how many are recorded."""
        if sequence >= self.recorded:
            with self.path.open("a") as f:
                for truth in self.truths[self.recorded:sequence + 1]:
                    f.write(json.dumps(truth) + "\n")
            self.recorded = min(sequence + 1, len(self.truths))
        return self.recorded


def _last_listed(playlist: Path) -> int:
    """The newest segment's number in the playlist; the muxer lists a segment once it has
    closed it (and renames the playlist into place, so it is never read half-written)."""
    try:
        text = playlist.read_text()
    except FileNotFoundError:
        return -1
    numbers = [int(m) for m in re.findall(r"^seg_(\d+)\.ts$", text, re.MULTILINE)]
    return max(numbers, default=-1)
