import io

import decord
import numpy as np
import pytest

from clipwatch.errors import UndecodableVideo, VideoTooShort
from inference.decode import decode_clips
from inference.sampling import ClipSampler


def test_decodes_the_sampled_frames_scaled_like_gluoncvs_loader(media):
    data = media["segment"].read_bytes()
    sampler = ClipSampler(frames=32, stride=2, snap_to_keyframe=False)
    out = decode_clips(data, sampler, resize=(340, 256))
    assert out.num_frames == 300 and out.fps == pytest.approx(30.0)
    assert out.indices == sampler.indices(300)
    assert out.frames.shape == (1, 32, 256, 340, 3) and out.frames.dtype == np.uint8
    # Same pixels as decord's own indexed read (what GluonCV's VideoClsCustom does), though
    # decoded as one consecutive run.
    vr = decord.VideoReader(io.BytesIO(data), width=340, height=256)
    reference = vr.get_batch(out.indices[0]).asnumpy()
    np.testing.assert_array_equal(out.frames[0], reference)


def test_keyframe_snap_and_several_clips(media):
    out = decode_clips(media["segment"].read_bytes(), ClipSampler(frames=8, stride=2, clips=3),
                       resize=(128, 96))
    assert out.frames.shape == (3, 8, 96, 128, 3)
    assert [c[0] for c in out.indices] == [47, 142, 240]  # 237 snapped to the keyframe at 240
    assert out.frames[0].std() > 1 and not np.array_equal(out.frames[0], out.frames[2])


@pytest.mark.parametrize("name,message", [
    ("audio_only", "no video stream"),
    ("truncated", "not decodable"),
    ("garbage", "not decodable"),
    ("empty", "empty"),
])
def test_bad_media_is_a_clear_error(media, name, message):
    with pytest.raises(UndecodableVideo, match=message):
        decode_clips(media[name].read_bytes(), ClipSampler(), resize=(340, 256))


def test_video_shorter_than_the_clip(media):
    with pytest.raises(VideoTooShort, match="needs 63"):
        decode_clips(media["short"].read_bytes(), ClipSampler(), resize=(340, 256))
