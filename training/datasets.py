"""Training data: list files and class folders → decoded, augmented clips.

Two list-file forms share one reader:
- GluonCV/UCF101 style ``<path> <num_frames> <label index>`` (what ``VideoClsCustom`` reads);
- reviewed segments ``<path> <start s> <end s> <label name>`` — the review tool's training
  export: one stretch of a clip with the label a person gave it.
Paths are relative to the list file's folder. A folder-per-class layout (``root/<class>/*.mp4``)
needs no list file. Sampling, decoding and normalization are the endpoint's own
(``inference.sampling``, ``inference.decode``, ``inference.preprocess``), so a model sees in
training exactly what it sees when served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from clipwatch.errors import ClipwatchError
from inference.decode import decode_clips
from inference.model import InputSpec
from inference.preprocess import normalize_clip

VIDEO_SUFFIXES = (".mp4", ".ts", ".avi", ".mkv", ".mov", ".webm")


class DatasetError(ValueError):
    """A list file or dataset folder problem, naming the file and line."""


@dataclass(frozen=True)
class ClipRecord:
    path: Path
    label: int
    num_frames: int = -1  # unknown for reviewed segments and folder layouts
    window: Optional[tuple[float, float]] = None  # (start, end) seconds of a reviewed segment
    source: str = ""  # "file:line", for messages


def read_classes(root: Path) -> list[str]:
    f = root / "classes.txt"
    if not f.is_file():
        raise DatasetError(f"{f}: missing (one class name a line)")
    return [c.strip() for c in f.read_text().splitlines() if c.strip()]


def read_list_file(list_file: Path, classes: list[str]) -> list[ClipRecord]:
    """Parse and check every line; the first problem raises with ``file:line``."""
    records = []
    for lineno, raw in enumerate(list_file.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{list_file}:{lineno}"
        records.append(_parse_line(line.split(), list_file.parent, classes, where))
    return records


def _parse_line(fields: list[str], root: Path, classes: list[str], where: str) -> ClipRecord:
    try:
        if len(fields) == 3:
            path, frames, label = root / fields[0], int(fields[1]), int(fields[2])
            window = None
            if frames <= 0:
                raise DatasetError(f"{where}: {fields[0]} has {frames} frames")
            if not 0 <= label < len(classes):
                raise DatasetError(f"{where}: label {label} is outside 0..{len(classes) - 1}")
        elif len(fields) == 4:
            path, frames, window = root / fields[0], -1, (float(fields[1]), float(fields[2]))
            if fields[3] not in classes:
                raise DatasetError(f"{where}: unknown label {fields[3]!r} (classes.txt has {', '.join(classes)})")
            label = classes.index(fields[3])
            if not 0 <= window[0] < window[1]:
                raise DatasetError(f"{where}: segment {window[0]}–{window[1]} s is empty or negative")
        else:
            raise DatasetError(f"{where}: expected '<path> <num_frames> <label>' or "
                               f"'<path> <start> <end> <label>', got {len(fields)} fields")
    except ValueError as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{where}: malformed line ({exc})") from None
    if not path.is_file():
        raise DatasetError(f"{where}: video {path} does not exist")
    return ClipRecord(path, label, frames, window, where)


def scan_class_folders(root: Path) -> tuple[list[str], list[ClipRecord]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    records = [ClipRecord(p, i, source=str(p)) for i, c in enumerate(classes)
               for p in sorted((root / c).iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES]
    if not records:
        raise DatasetError(f"{root}: no list files and no videos in class folders")
    return classes, records


def load_split(root: Path, split: str) -> tuple[list[str], list[ClipRecord]]:
    """``root/<split>.txt`` with ``root/classes.txt``; without list files, class folders where
    every fifth clip of each class is validation (split 'val'/'test') and the rest training."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    list_file = root / f"{split}.txt"
    if list_file.is_file():
        classes = read_classes(root)
        return classes, read_list_file(list_file, classes)
    if any(root.glob("*.txt")) and (root / "classes.txt").is_file():
        raise DatasetError(f"{list_file}: missing (found other list files in {root})")
    classes, records = scan_class_folders(root)
    held_out = {str(r.path) for c in range(len(classes))
                for r in [x for x in records if x.label == c][4::5]}
    keep = [r for r in records if (str(r.path) in held_out) == (split != "train")]
    return classes, keep


def read_flip_map(root: Path, classes: list[str]) -> dict[int, int]:
    """Which class a horizontally flipped clip shows (``flip.json``: name → name). Classes not
    in the map are never flipped: flipping 'moving left' without knowing it is wrong."""
    f = Path(root) / "flip.json"
    if not f.is_file():
        return {}
    names = json.loads(f.read_text())
    return {classes.index(a): classes.index(b) for a, b in names.items() if a in classes and b in classes}


def random_resized_crop(frames: np.ndarray, size: int, rng: np.random.Generator,
                        area=(0.5, 1.0), ratio=(3 / 4, 4 / 3)) -> np.ndarray:
    """The same random crop for every frame of a clip, resized to size×size."""
    import cv2

    t, h, w, _ = frames.shape
    for _ in range(10):
        target = rng.uniform(*area) * h * min(h, w)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            break
    else:
        cw = ch = min(h, w)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return np.stack([cv2.resize(f[y:y + ch, x:x + cw], (size, size), interpolation=cv2.INTER_LINEAR)
                     for f in frames])


class ClipDataset:
    """Records → (input (3, T, crop, crop) float32, label). Training draws a random clip
    position, a random resized crop and, where the class allows, a horizontal flip."""

    def __init__(self, records: list[ClipRecord], spec: InputSpec, train: bool,
                 flip_map: dict[int, int] | None = None, seed: int = 0):
        self.records, self.spec, self.train = records, spec, train
        self.flip_map = flip_map or {}
        self.sampler = spec.sampler(clips=1, snap_to_keyframe=False)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int, epoch: int = 0) -> tuple[np.ndarray, int]:
        """Raises ClipwatchError (undecodable, too short) for the caller to skip and report."""
        r = self.records[index]
        rng = np.random.default_rng((self.seed, epoch, index)) if self.train else None
        decoded = decode_clips(r.path.read_bytes(), self.sampler, self.spec.resize, r.window, rng)
        frames, label = decoded.frames[0], r.label
        if rng is not None:
            frames = random_resized_crop(frames, self.spec.crop, rng)
            if label in self.flip_map and rng.random() < 0.5:
                frames, label = frames[:, :, ::-1], self.flip_map[label]
        return normalize_clip(frames, self.spec.crop, self.spec.mean, self.spec.std), label


def iterate_batches(dataset: ClipDataset, order: list[int], batch_size: int, pool, epoch: int = 0,
                    skipped: dict[str, str] | None = None, with_indices: bool = False):
    """Yield (x, y) batches, decoding the next batch in ``pool`` while the caller trains on
    this one. Clips that fail to decode are left out and recorded in ``skipped``;
    ``with_indices`` yields (record indices, x, y) to tell which clips a batch holds."""
    def load(i):
        try:
            return dataset.load(i, epoch)
        except ClipwatchError as exc:
            if skipped is not None:
                skipped[dataset.records[i].source] = exc.message
            return None

    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    pending = pool.map(load, chunks[0]) if chunks else None
    for n in range(len(chunks)):
        items = [(i, it) for i, it in zip(chunks[n], pending) if it is not None]
        pending = pool.map(load, chunks[n + 1]) if n + 1 < len(chunks) else None
        if items:
            x = np.stack([x for _, (x, _) in items])
            y = np.array([y for _, (_, y) in items], dtype=np.float32)
            yield ([i for i, _ in items], x, y) if with_indices else (x, y)


def dataset_logits(logits_fn, dataset: ClipDataset, pool, batch_size: int,
                   skipped: dict[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels over a whole dataset, in order; ``logits_fn``: batch → logits."""
    outs, labels = [], []
    for x, y in iterate_batches(dataset, list(range(len(dataset))), batch_size, pool, 0, skipped):
        outs.append(logits_fn(x))
        labels.append(y.astype(int))
    if not outs:
        raise DatasetError("no clip of the dataset could be decoded")
    return np.concatenate(outs), np.concatenate(labels)
