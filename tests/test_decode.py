import subprocess

import numpy as np
import pytest

from clipwatch.testmedia import render_segment

from clipwatch.errors import UndecodableVideo, VideoTooShort
from inference.decode import PyAVVideo, decode_clips
from inference.sampling import ClipSampler


def ffmpeg_frames(path, width, height) -> np.ndarray:
    """Ground truth: every frame, in order, as ffmpeg itself decodes it."""
    raw = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(path), "-fps_mode", "passthrough",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True,
                         timeout=300).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


@pytest.mark.parametrize("seconds,gop,clips", [(10, 60, 3), (2, 250, 1)])
def test_frame_indices_are_exact_in_hls_segments(tmp_path, seconds, gop, clips):
    # HLS .ts segments start at a non-zero timestamp; decord alone misindexes them by a GOP.
    path = render_segment(tmp_path / "s.ts", seconds=seconds, size=(320, 240), gop=gop, seed=3)
    truth = ffmpeg_frames(path, 320, 240)
    sampler = ClipSampler(frames=8, stride=3, clips=clips, snap_to_keyframe=False)
    out = decode_clips(path.read_bytes(), sampler, resize=(320, 240))
    assert out.num_frames == len(truth)
    for clip, frames in zip(out.indices, out.frames):
        np.testing.assert_array_equal(frames, truth[clip])
    assert out.indices[-1][-1] >= (len(truth) - 1) // gop * gop  # in the last GOP, which decord loses on TS


def test_decodes_the_sampled_frames_scaled_like_gluoncvs_loader(media):
    out = decode_clips(media["segment"].read_bytes(), ClipSampler(), resize=(340, 256))
    assert out.num_frames == 300 and out.fps == pytest.approx(30.0)
    assert out.indices == [list(range(120, 183, 2))]  # centered at 118, snapped to the keyframe
    assert out.frames.shape == (1, 32, 256, 340, 3) and out.frames.dtype == np.uint8


def test_keyframe_snap_and_several_clips(media):
    out = decode_clips(media["segment"].read_bytes(), ClipSampler(frames=8, stride=2, clips=3),
                       resize=(128, 96))
    assert out.frames.shape == (3, 8, 96, 128, 3)
    assert [c[0] for c in out.indices] == [47, 142, 240]  # 237 snapped to the keyframe at 240
    assert out.frames[0].std() > 1 and not np.array_equal(out.frames[0], out.frames[2])


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
@pytest.mark.parametrize("name,message", [
    ("audio_only", "no video stream"),
    ("truncated", "not decodable"),
    ("garbage", "not decodable"),
    ("empty", "empty"),
])
def test_bad_media_is_a_clear_error(media, name, message, decoder):
    with pytest.raises(UndecodableVideo, match=message):
        decode_clips(media[name].read_bytes(), ClipSampler(), resize=(340, 256), decoder=decoder)


def test_video_shorter_than_the_clip(media):
    with pytest.raises(VideoTooShort, match="needs 63"):
        decode_clips(media["short"].read_bytes(), ClipSampler(), resize=(340, 256))


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_both_decoders_match_ffmpeg_frame_for_frame(tmp_path, decoder):
    # A B-frame encoder (x264 veryfast: 3 B-frames) and a stride that lands on both kinds of
    # picture, so the PyAV decoder's skipping of unreferenced pictures is exercised.
    path = render_segment(tmp_path / "s.ts", seconds=4, size=(320, 240), gop=60, seed=5)
    truth = ffmpeg_frames(path, 320, 240)
    sampler = ClipSampler(frames=10, stride=3, clips=2, snap_to_keyframe=False)
    out = decode_clips(path.read_bytes(), sampler, resize=(320, 240), decoder=decoder)
    for clip, frames in zip(out.indices, out.frames):
        np.testing.assert_array_equal(frames, truth[clip])


def test_pyav_skips_only_unreferenced_pictures_the_clip_does_not_show(media):
    video = PyAVVideo(media["segment"].read_bytes(), (340, 256))
    clip = list(range(120, 183, 2))
    frames = video.frames(clip)
    assert video.skipped > 0 and video.decoded < 63  # of the 63 (and a P-frame after) it spans
    # Scaled as decord scales (GluonCV's loader): bilinear, < 1 grey level apart on average.
    reference = decode_clips(media["segment"].read_bytes(), ClipSampler(), (340, 256), decoder="decord")
    assert reference.indices == [clip]
    assert np.abs(frames.astype(int) - reference.frames[0]).mean() < 1.0


def test_pyav_reads_mp4_too(tmp_path):
    # Training clips are MP4 (length-prefixed NAL units, not TS start codes).
    ts = render_segment(tmp_path / "s.ts", seconds=3, size=(320, 240), gop=30, seed=2, audio=False)
    mp4 = tmp_path / "s.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(ts), "-c", "copy", str(mp4)], check=True, timeout=300)
    truth = ffmpeg_frames(mp4, 320, 240)
    video = PyAVVideo(mp4.read_bytes())
    assert video.num_frames == len(truth) == 90 and video.keyframes() == [0, 30, 60]
    clip = list(range(31, 60, 2))
    np.testing.assert_array_equal(video.frames(clip), truth[clip])
    assert video.skipped > 0


def test_unknown_decoder_is_refused(media):
    with pytest.raises(ValueError, match="unknown decoder"):
        decode_clips(media["segment"].read_bytes(), ClipSampler(), decoder="opencv")


def test_a_window_of_real_footage_is_a_segment_of_its_own(tmp_path):
    """What the endpoint benchmark learns from: distinct windows of the same real clip."""
    from clipwatch import footage

    windows = [footage.segment("basketball", tmp_path / f"w{start}.ts", size=(320, 180), start=start, seconds=3.0)
               for start in (0.0, 4.0)]
    for path in windows:
        info = footage.probe(path)
        assert (info["width"], info["height"]) == (320, 180) and abs(info["duration"] - 3.0) < 0.2
    assert windows[0].read_bytes() != windows[1].read_bytes()
