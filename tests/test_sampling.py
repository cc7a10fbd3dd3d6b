import numpy as np
import pytest

from clipwatch.errors import VideoTooShort
from inference.sampling import ClipSampler


def gluoncv_val_indices(num_frames, new_length, new_step, num_segments):
    """The frame ids GluonCV's VideoClsCustom (decord loader, validation mode) reads."""
    from inference.gluoncv_compat import import_gluoncv

    import_gluoncv()
    from gluoncv.data.video_custom.classification import VideoClsCustom

    ds = VideoClsCustom.__new__(VideoClsCustom)
    ds.num_segments, ds.new_length, ds.new_step = num_segments, new_length, new_step
    ds.skip_length, ds.temporal_jitter = new_length * new_step, False
    offsets, skips = VideoClsCustom._sample_val_indices(ds, num_frames)
    ids = []
    for seg in offsets:
        offset, clip = int(seg), []
        for i, _ in enumerate(range(0, ds.skip_length, new_step)):
            clip.append(offset + skips[i] - 1 if offset + skips[i] <= num_frames else offset - 1)
            if offset + new_step < num_frames:
                offset += new_step
        ids.append(clip)
    return ids


@pytest.mark.parametrize("num_frames", [64, 65, 100, 250, 300, 301, 600])
@pytest.mark.parametrize("clips", [1, 2, 3])
@pytest.mark.parametrize("frames,stride", [(32, 2), (32, 1), (8, 4)])
def test_default_sampling_is_gluoncvs_validation_sampling(num_frames, clips, frames, stride):
    ours = ClipSampler(frames, stride, clips, snap_to_keyframe=False).indices(num_frames)
    assert ours == gluoncv_val_indices(num_frames, frames, stride, clips)


def test_ten_second_segment_default_is_centered_two_seconds():
    (clip,) = ClipSampler().indices(300)
    assert clip[0] == 118 and clip[-1] == 180 and len(clip) == 32
    assert np.all(np.diff(clip) == 2)


def test_snaps_to_a_nearby_keyframe_only():
    s = ClipSampler()
    assert s.starts(300, keyframes=[0, 60, 120, 180, 240]) == [120]
    assert s.starts(300, keyframes=[0, 250]) == [118]  # too far: keep the centered start
    assert s.starts(300, keyframes=[114, 123]) == [114]  # two sampling steps away: snaps
    assert s.starts(300, keyframes=[113, 123]) == [118]  # more than two sampling steps away
    # A 2 s clip's start stays where GluonCV puts it (frame 14, not the keyframe at 0).
    assert ClipSampler(frames=16, stride=2).starts(60, keyframes=[0]) == [14]
    assert s.starts(64, keyframes=[0, 30]) == [0]  # a keyframe whose clip would overrun: ignored


def test_clips_spread_over_the_segment():
    starts = ClipSampler(clips=3, snap_to_keyframe=False).starts(300)
    assert starts == sorted(starts) and starts[0] < 60 and starts[-1] > 170


def test_too_short_video_names_the_numbers():
    with pytest.raises(VideoTooShort, match="30 frames.*needs 63"):
        ClipSampler().indices(30)


def test_a_model_that_learned_at_25_fps_keeps_its_motion_speed_on_faster_streams():
    """DeepMind's I3D (consecutive frames at 25 fps): 25–30 fps streams keep stride 1, 50 and
    60 fps streams take every second frame; a card without fps never changes the stride."""
    kinetics = ClipSampler(frames=32, stride=1, fps=25.0)
    assert kinetics.for_rate(25.0).stride == 1 and kinetics.for_rate(29.97).stride == 1
    assert kinetics.for_rate(50.0).stride == 2 and kinetics.for_rate(59.94).stride == 2
    assert ClipSampler(frames=32, stride=2).for_rate(60.0).stride == 2


def test_decoding_a_60_fps_segment_samples_at_the_models_rate(tmp_path):
    from clipwatch.testmedia import render_segment
    from inference.decode import decode_clips

    segment = render_segment(tmp_path / "sixty.ts", seconds=2, size=(320, 240), fps=60, gop=120)
    out = decode_clips(segment.read_bytes(), ClipSampler(frames=8, stride=1, fps=25.0), (160, 120))
    assert round(out.fps) == 60
    assert [b - a for a, b in zip(out.indices[0], out.indices[0][1:])] == [2] * 7
