"""Dynamic batching across concurrent requests: one model thread, fed by a queue.

On a CPU the model already uses every core, so two forwards at once only slow each other down.
Requests therefore queue in front of one model thread; each time it finishes a forward it takes
everything that queued up meanwhile (up to ``max_clips`` clips of the same shape) as the next
batch. At low load a request runs alone and waits for nothing (``max_wait_ms`` = 0: no timer);
under load the batches grow by themselves and the per-call overheads are shared.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

import numpy as np

from clipwatch import metrics

Infer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class _Job:
    batch: np.ndarray
    future: Future


class DynamicBatcher:
    def __init__(self, infer: Infer, max_clips: int = 4, max_wait_ms: float = 0.0):
        if max_clips < 1:
            raise ValueError("max_clips must be at least 1")
        self.infer, self.max_clips, self.max_wait = infer, max_clips, max_wait_ms / 1000.0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._held: _Job | None = None  # a job of another shape, first in the next batch
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="model-batcher")
        self._thread.start()

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Blocks until this batch's (logits, features) are ready."""
        return self.submit(batch).result()

    def submit(self, batch: np.ndarray) -> Future:
        if self._closed:
            raise RuntimeError("the model batcher is closed")
        future: Future = Future()
        self._queue.put(_Job(batch, future))
        return future

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=60)

    # -- the model thread -------------------------------------------------------------------
    def _next_batch(self) -> list[_Job] | None:
        first = self._held or self._queue.get()
        self._held = None
        if first is None:
            return None
        jobs, clips = [first], len(first.batch)
        shape = first.batch.shape[1:]
        while clips < self.max_clips:
            try:
                job = self._queue.get(timeout=self.max_wait) if self.max_wait else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # closing: finish this batch, then stop
                self._queue.put(None)
                break
            if job.batch.shape[1:] != shape or clips + len(job.batch) > self.max_clips:
                self._held = job
                break
            jobs.append(job)
            clips += len(job.batch)
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._next_batch()
            if jobs is None:
                return
            jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            if not jobs:
                continue
            try:
                batch = jobs[0].batch if len(jobs) == 1 else np.concatenate([j.batch for j in jobs])
                metrics.BATCH_CLIPS.observe(len(batch))
                logits, features = self.infer(batch)
            except BaseException as exc:  # handed to every waiting request
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            start = 0
            for job in jobs:
                end = start + len(job.batch)
                job.future.set_result((logits[start:end], features[start:end]))
                start = end
