import numpy as np
import pytest

from inference.gluoncv_compat import import_gluoncv

import_gluoncv()
from gluoncv.data.transforms.video import VideoGroupValTransform  # noqa: E402

from inference.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_clip, normalize_clips


def gluoncv_reference(frames: np.ndarray, crop: int) -> np.ndarray:
    """What VideoClsCustom returns for one clip: the transform per frame, stacked to
    (T, 3, H, W), then laid out as (3, T, H, W)."""
    transform = VideoGroupValTransform(size=crop, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    out = np.stack(transform([f for f in frames]), axis=0)
    return np.transpose(out, (1, 0, 2, 3))


@pytest.mark.parametrize("shape,crop", [((32, 256, 340), 224), ((8, 96, 128), 64), ((4, 227, 301), 224)])
def test_equivalent_to_gluoncv_val_transform(shape, crop):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=shape + (3,), dtype=np.uint8)
    ours = normalize_clip(frames, crop)
    ref = gluoncv_reference(frames, crop)
    assert ours.shape == ref.shape == (3, shape[0], crop, crop)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6)


def test_batch_layout_is_n_c_t_h_w():
    clips = np.zeros((2, 8, 96, 128, 3), np.uint8)
    assert normalize_clips(clips, 64).shape == (2, 3, 8, 64, 64)


def test_rejects_frames_smaller_than_the_crop():
    with pytest.raises(ValueError, match="smaller than the 224px crop"):
        normalize_clip(np.zeros((2, 100, 100, 3), np.uint8), 224)
