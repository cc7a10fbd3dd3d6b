"""Dynamic batching: concurrent requests share forwards, each gets its own rows back."""

import threading

import numpy as np
import pytest

from inference.batching import DynamicBatcher

from deadline import set_within

RESULT_S = 120  # a hang guard on each future: a lost request fails the test instead of hanging it


class GatedModel:
    """A model whose first forward waits for a gate, so later requests queue behind it."""

    def __init__(self):
        self.gate, self.started = threading.Event(), threading.Event()
        self.batches: list[int] = []

    def __call__(self, batch):
        self.batches.append(len(batch))
        if len(self.batches) == 1:
            self.started.set()
            set_within(self.gate, "the test to open the gate")
        if np.any(batch < 0):
            raise ValueError("negative input")
        flat = batch.reshape(len(batch), -1)
        return flat.sum(axis=1, keepdims=True), flat * 2


def submit_behind_a_running_forward(model, batcher, batches):
    first = batcher.submit(np.zeros((1, 3)))
    set_within(model.started, "the first forward to start")
    futures = [batcher.submit(b) for b in batches]
    model.gate.set()
    return first, futures


def test_requests_queued_during_a_forward_run_together_and_get_their_rows():
    model = GatedModel()
    batcher = DynamicBatcher(model, max_clips=8)
    batches = [np.full((1, 3), i, np.float32) for i in (1, 2, 3)] + [np.ones((2, 3))]
    first, futures = submit_behind_a_running_forward(model, batcher, batches)
    assert first.result(timeout=RESULT_S)[0].shape == (1, 1)
    for batch, future in zip(batches, futures):
        logits, features = future.result(timeout=RESULT_S)
        np.testing.assert_array_equal(logits, batch.sum(axis=1, keepdims=True))
        np.testing.assert_array_equal(features, batch * 2)
    assert model.batches == [1, 5]
    batcher.close()


def test_batches_respect_max_clips_and_shape():
    model = GatedModel()
    batcher = DynamicBatcher(model, max_clips=2)
    batches = [np.ones((1, 3)), np.ones((1, 3)), np.ones((1, 4)), np.ones((1, 3))]
    first, futures = submit_behind_a_running_forward(model, batcher, batches)
    for f in [first, *futures]:
        f.result(timeout=RESULT_S)
    # Two same-shaped clips, then the odd shape alone, then the rest.
    assert model.batches == [1, 2, 1, 1]
    batcher.close()


def test_a_failing_forward_fails_its_batch_only():
    model = GatedModel()
    batcher = DynamicBatcher(model, max_clips=4)
    first, futures = submit_behind_a_running_forward(model, batcher, [-np.ones((1, 3)), np.ones((1, 3))])
    first.result(timeout=RESULT_S)
    for f in futures:  # batched together: both see the error
        with pytest.raises(ValueError, match="negative input"):
            f.result(timeout=RESULT_S)
    assert batcher(np.ones((1, 3)))[0][0, 0] == 3.0  # and the batcher still serves
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(np.ones((1, 3)))


def test_max_clips_must_be_positive():
    with pytest.raises(ValueError):
        DynamicBatcher(lambda b: (b, b), max_clips=0)
