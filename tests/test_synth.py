"""training.synth: the synthetic activities move the way their labels say, datasets and live
streams are real, decodable H.264 with list files / ground truth that match what is on disk."""

from __future__ import annotations

import json
import re
import threading
import time

import cv2
import m3u8
import numpy as np
import pytest

from inference.decode import decode_clips, open_video
from inference.sampling import ClipSampler
from training.synth import ACTIVITIES, HFLIP, encode, make_dataset, render_frames, write_live_stream

SIZE = (128, 72)
SHAKE = 3  # pixels: the camera shakes by up to 2 % of the width, rounded to whole pixels


def stabilized(frames: np.ndarray) -> np.ndarray:
    """The clip with camera shake undone: each lightly blurred frame's interior, shifted by the
    whole-pixel offset that best matches the first frame. Searching every offset is slower than
    phase correlation but cannot be fooled by a flat background."""
    f = np.stack([cv2.GaussianBlur(np.float32(x), (0, 0), 1.0) for x in frames])
    # Two frames are offset by up to 2 × SHAKE from each other; an interior 4 × SHAKE from the
    # edges, moved that far, still never reaches the reflected border a shake brings in.
    m, (h, w) = 2 * SHAKE, f.shape[1:3]

    def interior(x, dy, dx):
        return x[2 * m + dy:h - 2 * m + dy, 2 * m + dx:w - 2 * m + dx]

    ref = interior(f[0], 0, 0)
    offsets = [(dy, dx) for dy in range(-m, m + 1) for dx in range(-m, m + 1)]
    return np.stack([interior(x, *min(offsets, key=lambda o: np.abs(interior(x, *o) - ref).mean()))
                     for x in f])


def motion(frames: np.ndarray) -> float:
    """How much the stabilized clip changes where it changes most: the 99.5th percentile of
    per-pixel temporal standard deviation (sensor noise alone gives ~2)."""
    return float(np.percentile(stabilized(frames).std(0).max(-1), 99.5))


def horizontal_velocity(frames: np.ndarray) -> float:
    """Median per-frame shift of the centroid of what differs from the clip's still background,
    over consecutive frames with the object in view (a wrapping object is off screen for a
    moment; the median ignores its jump back to the other side)."""
    s = stabilized(frames)
    change = np.abs(s - np.median(s, 0)).sum(-1).sum(1)  # (T, W)
    x = (change * np.arange(change.shape[1])).sum(1) / change.sum(1)
    # (relative to the 90th percentile, not the maximum: one badly stabilized frame spikes)
    in_view = change.sum(1) > 0.75 * np.percentile(change.sum(1), 90)
    return float(np.median(np.diff(x)[in_view[1:] & in_view[:-1]]))


# --------------------------------------------------------------------------------- rendering

@pytest.mark.parametrize("activity", ACTIVITIES)
def test_renders_rgb_frames_deterministically(activity):
    frames = render_frames(activity, np.random.default_rng(1), 12, SIZE)
    assert frames.shape == (12, 72, 128, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, render_frames(activity, np.random.default_rng(1), 12, SIZE))
    assert not np.array_equal(frames, render_frames(activity, np.random.default_rng(2), 12, SIZE))


@pytest.mark.parametrize("activity", ACTIVITIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_only_the_static_scene_is_still_once_shake_is_undone(activity, seed):
    frames = render_frames(activity, np.random.default_rng([seed, 99]), 24, SIZE)
    if activity == "static_scene":
        assert motion(frames) < 8  # noise and shake only
    else:
        assert motion(frames) > 20


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_moving_left_and_right_go_their_way_and_hflip_swaps_them(seed):
    for activity, sign in (("moving_left", -1), ("moving_right", 1)):
        frames = render_frames(activity, np.random.default_rng(seed), 24, SIZE)
        assert np.sign(horizontal_velocity(frames)) == sign
        flipped = frames[:, :, ::-1]
        assert np.sign(horizontal_velocity(flipped)) == -sign
        assert {"moving_left": -1, "moving_right": 1}[HFLIP[activity]] == -sign


def test_hflip_is_an_involution_over_all_classes():
    assert set(HFLIP) == set(ACTIVITIES) and set(HFLIP.values()) == set(ACTIVITIES)
    assert all(HFLIP[HFLIP[a]] == a for a in ACTIVITIES)
    assert [a for a in ACTIVITIES if HFLIP[a] != a] == ["moving_left", "moving_right"]


def test_scale_and_speed_change_the_clip():
    base = render_frames("moving_right", np.random.default_rng(5), 24, SIZE)
    tiny = render_frames("moving_right", np.random.default_rng(5), 24, SIZE, scale=0.3)
    fast = render_frames("moving_right", np.random.default_rng(5), 24, SIZE, speed=3.0)
    assert abs(horizontal_velocity(fast)) > 2 * abs(horizontal_velocity(base))
    assert motion(tiny) > 20  # still moving, just small
    assert not np.array_equal(tiny, base)


def test_unknown_activity_is_an_error():
    with pytest.raises(ValueError, match="unknown"):
        render_frames("dancing", np.random.default_rng(0), 4, SIZE)


# ---------------------------------------------------------------------------------- encoding

def test_encode_rejects_odd_sizes_and_unknown_containers(tmp_path):
    with pytest.raises(ValueError, match="even"):
        encode(np.zeros((4, 71, 128, 3), np.uint8), tmp_path / "odd.mp4")
    with pytest.raises(ValueError, match="even"):
        encode(np.zeros((4, 72, 127, 3), np.uint8), tmp_path / "odd.ts")
    with pytest.raises(ValueError, match="container"):
        encode(np.zeros((4, 72, 128, 3), np.uint8), tmp_path / "clip.avi")


@pytest.mark.parametrize("suffix", [".mp4", ".ts"])
def test_encode_keeps_every_frame_and_a_fixed_gop(tmp_path, suffix):
    # A flickering light is the worst case for scene-cut keyframes, which the encoder must not add.
    frames = render_frames("flickering_light", np.random.default_rng(3), 90, SIZE, fps=30)
    path = encode(frames, tmp_path / f"clip{suffix}", fps=30, gop=30)
    vr = open_video(path.read_bytes())
    assert len(vr) == 90 and list(vr.get_key_indices()) == [0, 30, 60]
    decoded = vr.get_batch(list(range(90))).asnumpy()
    assert np.abs(decoded.astype(int) - frames).mean() < 8  # lossy, but the same pictures


# ----------------------------------------------------------------------------------- dataset

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    return out, make_dataset(out, clips_per_class=3, seed=4, size=SIZE, seconds=1.0, progress=False)


def read_list(path):
    return [line.split() for line in path.read_text().splitlines()]


def test_dataset_layout_and_summary(dataset):
    out, summary = dataset
    assert (out / "classes.txt").read_text().splitlines() == list(ACTIVITIES)
    assert summary["counts"] == {"train": 7, "val": 7, "test": 7}
    assert summary["classes"] == list(ACTIVITIES) and summary["size"] == list(SIZE)
    assert summary["fps"] == 30 and summary["seconds"] == 1.0
    for activity in ACTIVITIES:
        assert sorted(p.name for p in (out / activity).iterdir()) == [
            f"{activity}_{i:04d}.mp4" for i in range(3)]


def test_list_files_match_the_files(dataset):
    out, _ = dataset
    listed = []
    for split in ("train", "val", "test"):
        rows = read_list(out / f"{split}.txt")
        assert sorted(int(label) for _, _, label in rows) == list(range(len(ACTIVITIES)))  # 1 per class
        listed += rows
    assert sorted(path for path, _, _ in listed) == sorted(
        str(p.relative_to(out)) for p in out.glob("*/*.mp4"))
    for path, num_frames, label in listed:
        assert path.split("/")[0] == ACTIVITIES[int(label)]
        decoded = decode_clips((out / path).read_bytes(), ClipSampler(frames=8, stride=2, snap_to_keyframe=False),
                               resize=SIZE)
        assert decoded.num_frames == int(num_frames) == 30
        assert decoded.frames.shape == (1, 8, 72, 128, 3)


def test_dataset_is_deterministic_for_a_seed(dataset, tmp_path):
    out, _ = dataset
    again = tmp_path / "again"
    make_dataset(again, clips_per_class=3, seed=4, size=SIZE, seconds=1.0, progress=False)
    for name in ("classes.txt", "train.txt", "val.txt", "test.txt"):
        assert (again / name).read_text() == (out / name).read_text()
    clip = "rotating/rotating_0001.mp4"
    assert (again / clip).read_bytes() == (out / clip).read_bytes()


# ------------------------------------------------------------------------------- live stream

def read_truth(out):
    return [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]


def test_live_stream_is_a_sliding_hls_playlist_with_ground_truth(tmp_path):
    out = tmp_path / "live"
    playlist = write_live_stream(out, 3, seed=2, size=SIZE, segment_seconds=2, list_size=1, progress=False)
    text = playlist.read_text()
    assert playlist == out / "live.m3u8" and text.startswith("#EXTM3U")
    assert "#EXT-X-TARGETDURATION:2" in text
    pl = m3u8.loads(text)
    assert pl.media_sequence == 2 and [s.uri for s in pl.segments] == ["seg_00002.ts"]
    assert not (out / "seg_00000.ts").exists()  # slid out of the window and deleted
    for seg in pl.segments:
        assert seg.duration == pytest.approx(2.0)
        decoded = decode_clips((out / seg.uri).read_bytes(),
                               ClipSampler(frames=8, stride=2, snap_to_keyframe=False), resize=SIZE)
        assert decoded.num_frames == 60  # the segment holds exactly its 2 s, so truth lines up
    truth = read_truth(out)
    assert [t["sequence"] for t in truth] == [0, 1, 2]
    assert [t["file"] for t in truth] == ["seg_00000.ts", "seg_00001.ts", "seg_00002.ts"]
    assert [(t["start"], t["duration"]) for t in truth] == [(0, 2), (2, 2), (4, 2)]
    for t in truth:
        assert t["label"] == t["labels"][0] and set(t["labels"]) <= set(ACTIVITIES)


def test_live_schedule_runs_and_ambiguous_stretches(tmp_path):
    out = tmp_path / "live"
    write_live_stream(out, 40, seed=0, size=(64, 36), fps=5, segment_seconds=2, list_size=3, progress=False)
    truth = read_truth(out)
    assert [t["sequence"] for t in truth] == list(range(40))
    runs = []  # (truth without sequence/file/start, length)
    for t in truth:
        key = (t["label"], tuple(t["labels"]), t["note"])
        if runs and runs[-1][0] == key:
            runs[-1][1] += 1
        else:
            runs.append([key, 1])
    assert all(1 <= n <= 3 for _, n in runs[:-1])  # the last run may be cut short
    assert all(a[0][0] != b[0][0] for a, b in zip(runs, runs[1:]))  # the activity changes
    notes = {t["note"] for t in truth}
    assert notes <= {"", "two activities", "tiny object", "fast object"} and len(notes) > 1
    for t in truth:
        assert t["ambiguous"] == bool(t["note"])
        assert (len(t["labels"]) == 2) == (t["note"] == "two activities")


def test_realtime_stream_reports_each_segment_once_it_exists(tmp_path):
    out = tmp_path / "live"
    seen = []  # (seconds since start, ground-truth files, segment files on disk)
    writer = threading.Thread(target=write_live_stream, args=(out, 3), kwargs=dict(
        size=(64, 36), fps=30, segment_seconds=1, list_size=10, realtime=True, progress=False),
        daemon=True)  # a hung writer must not keep pytest from exiting
    start = time.monotonic()
    writer.start()
    deadline = start + 120  # a hang guard only: the stream lasts 3 s
    while writer.is_alive():
        assert time.monotonic() < deadline, "the live stream writer still running after 120 s"
        if (out / "ground_truth.jsonl").exists():
            files = [t["file"] for t in read_truth(out)]
            seen.append((time.monotonic() - start, files, {p.name for p in out.glob("seg_*.ts")}))
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    assert elapsed >= 89 / 30  # paced to the wall clock: the 90th frame is due at 2.97 s
    assert all(set(files) <= on_disk for _, files, on_disk in seen)  # never ahead of the muxer
    first = min(t for t, files, _ in seen if files)
    assert first < elapsed - 1.0  # the first segment was reported while the stream went on
    assert [t["file"] for t in read_truth(out)] == [f"seg_{n:05d}.ts" for n in range(3)]
    assert all(re.fullmatch(r"seg_\d{5}\.ts", p.name) for p in out.glob("seg_*"))  # no .tmp left


def test_an_encoder_failure_is_reported_with_ffmpegs_message(tmp_path):
    with pytest.raises(RuntimeError, match="hls_list_size"):
        write_live_stream(tmp_path, 2, size=(64, 36), segment_seconds=2, list_size=-1, progress=False)
