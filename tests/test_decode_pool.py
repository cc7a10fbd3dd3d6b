"""Decoding in worker processes: same pixels as in-thread decoding, errors still clear, and a
worker that dies does not take the endpoint (or other requests) with it."""

import os
import signal

import numpy as np
import pytest

from clipwatch.errors import UndecodableVideo
from inference.decode import decode_clips
from inference.decode_pool import DecodePool
from inference.preprocess import center_crop_clips
from inference.sampling import ClipSampler

SAMPLER = ClipSampler(frames=8, stride=2)


@pytest.fixture(scope="module")
def pool():
    p = DecodePool(workers=1)
    p.warm_up()
    yield p
    p.close()


def test_same_pixels_as_decoding_in_thread(pool, media):
    data = media["segment"].read_bytes()
    ours = pool.decode(data, SAMPLER, (128, 96), crop=64)
    ref = decode_clips(data, SAMPLER, (128, 96))
    assert ours.indices == ref.indices and ours.num_frames == 300
    np.testing.assert_array_equal(ours.frames, center_crop_clips(ref.frames, 64))
    assert ours.frames.shape == (1, 8, 64, 64, 3)


def test_bad_media_raises_the_decoders_error(pool, media):
    with pytest.raises(UndecodableVideo, match="not decodable"):
        pool.decode(media["garbage"].read_bytes(), SAMPLER, (128, 96), crop=64)


def test_a_killed_worker_is_replaced(pool, media):
    data = media["segment2"].read_bytes()
    before = pool.decode(data, SAMPLER, (128, 96), crop=64)
    (pid,) = pool.pids()
    os.kill(pid, signal.SIGKILL)
    after = pool.decode(data, SAMPLER, (128, 96), crop=64)  # retried on a fresh pool
    np.testing.assert_array_equal(after.frames, before.frames)
    assert pool.pids() and pid not in pool.pids()


def test_workers_do_not_load_mxnet_or_torch(pool):
    (pid,) = pool.pids()
    maps = open(f"/proc/{pid}/maps").read()
    assert "libavcodec" in maps  # the decoder, loaded at start-up
    assert "libmxnet" not in maps and "libtorch" not in maps


def test_workers_are_recycled_after_their_quota(media):
    pool = DecodePool(workers=1, tasks_per_worker=2)
    try:
        data = media["segment"].read_bytes()
        first = pool.warm_up()  # the warm-up ping is the first task
        pool.decode(data, SAMPLER, (128, 96), crop=64)
        out = pool.decode(data, SAMPLER, (128, 96), crop=64)  # served by a fresh worker
        assert out.frames.shape == (1, 8, 64, 64, 3)
        assert pool.pids() and pool.pids() != first
    finally:
        pool.close()
