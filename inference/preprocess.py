"""Frames → network input, numerically equivalent to GluonCV's ``VideoGroupValTransform``
(center crop, /255, ImageNet mean/std) applied after GluonCV's loader resized the frames.

GluonCV does this per frame in float64; here one vectorized float32 pass over the whole clip
(crop first, so only the pixels kept are converted) gives the same values to ~1e-6."""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def center_crop_box(height: int, width: int, size: int) -> tuple[int, int]:
    """Top-left corner of the centered crop, rounded as GluonCV rounds it."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def center_crop_clips(clips: np.ndarray, crop: int) -> np.ndarray:
    """(N, T, H, W, 3) → (N, T, crop, crop, 3), the box ``normalize_clip`` would keep: done
    where the frames are decoded, so only the kept pixels travel between processes."""
    n, t, h, w, _ = clips.shape
    if h < crop or w < crop:
        raise ValueError(f"frames of {w}x{h} are smaller than the {crop}px crop")
    y, x = center_crop_box(h, w, crop)
    return np.ascontiguousarray(clips[:, :, y:y + crop, x:x + crop, :])


def normalize_clip(frames: np.ndarray, crop: int = 224, mean=IMAGENET_MEAN,
                   std=IMAGENET_STD, out: np.ndarray | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB → (3, T, crop, crop) float32, written into ``out`` if given.
    Reads the uint8 pixels in the output's channel-first order and writes each float once
    (converting, then transposing, made two more passes over 19 MB: ~2× slower)."""
    t, h, w, _ = frames.shape
    if h < crop or w < crop:
        raise ValueError(f"frames of {w}x{h} are smaller than the {crop}px crop")
    y, x = center_crop_box(h, w, crop)
    scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).reshape(3, 1, 1, 1)
    shift = (np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).reshape(3, 1, 1, 1)
    if out is None:
        out = np.empty((3, t, crop, crop), np.float32)
    np.multiply(frames[:, y:y + crop, x:x + crop, :].transpose(3, 0, 1, 2), scale, out=out)
    out -= shift
    return out


def normalize_clips(clips: np.ndarray, crop: int = 224, mean=IMAGENET_MEAN,
                    std=IMAGENET_STD) -> np.ndarray:
    """(N, T, H, W, 3) uint8 → (N, 3, T, crop, crop) float32, the I3D batch layout."""
    out = np.empty((len(clips), 3, clips.shape[1], crop, crop), np.float32)
    for clip, dest in zip(clips, out):
        normalize_clip(clip, crop, mean, std, out=dest)
    return out
