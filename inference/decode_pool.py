"""Decoding in worker processes, so decoding one segment overlaps the model's forward on
another and both cores work; a decoder that crashes on a bad segment takes down one worker,
not the endpoint.

Workers are forked from a clean fork server that has imported only ``inference.decode`` (not
MXNet or PyTorch, nor the parent's ``__main__``): each costs ~60 MB, not the parent's size.
They decode (``inference.decode``) and center-crop, and send back only the kept pixels (4.8 MB
of uint8 for one I3D clip, against 19 MB of normalized float32).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from clipwatch.errors import UndecodableVideo

from .decode import (DEFAULT_DECODER, DecodedClips, check_decoder, decode_clips, decode_only_process,
                     import_decoder)
from .preprocess import center_crop_clips
from .sampling import ClipSampler


def default_workers() -> int:
    """One per core: while one worker waits on a pipe or the model, another decodes."""
    return max(1, os.cpu_count() or 1)


# A worker is replaced after this many segments: libav's heap fragments slowly (with decord,
# worker RSS rose ~20 MB per 100 segments, in steps, over 1,000 requests; benchmarks/memory.py),
# and a fresh worker costs ~0.2 s of one core, once per few minutes of full load.
TASKS_PER_WORKER = 200


def _init_worker() -> None:
    decode_only_process()
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _decode_job(data: bytes, sampler: ClipSampler, resize: tuple[int, int], crop: int,
                threads: int = 1, decoder: str = DEFAULT_DECODER,
                window: tuple[float, float] | None = None) -> tuple[DecodedClips, float]:
    start = time.perf_counter()
    decoded = decode_clips(data, sampler, resize, window=window, num_threads=threads, decoder=decoder)
    decoded.frames = center_crop_clips(decoded.frames, crop)
    return decoded, (time.perf_counter() - start) * 1000.0


def _ping(decoder: str) -> int:
    import_decoder(decoder)  # pay the import at start-up, not on the first request
    return os.getpid()


class DecodePool:
    def __init__(self, workers: int | None = None, tasks_per_worker: int = TASKS_PER_WORKER,
                 decoder: str = DEFAULT_DECODER):
        check_decoder(decoder)  # an unknown name fails here, not in a worker (which imports it)
        self.workers = workers or default_workers()
        self.decoder = decoder
        self.tasks_per_worker = tasks_per_worker
        self._lock = threading.Lock()
        self._in_flight = 0
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["inference.decode_pool"])
        return ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                   max_tasks_per_child=self.tasks_per_worker)

    def warm_up(self) -> list[int]:
        """Start every worker now; their process ids."""
        futures = [self._pool.submit(_ping, self.decoder) for _ in range(self.workers)]
        return sorted({f.result() for f in futures})

    def pids(self) -> list[int]:
        return [p.pid for p in (self._pool._processes or {}).values()]

    def decode(self, data: bytes, sampler: ClipSampler, resize: tuple[int, int],
               crop: int, window: tuple[float, float] | None = None) -> DecodedClips:
        """Frames the sampler picks (within ``window`` seconds, when given), scaled to ``resize``
        and center-cropped to ``crop``."""
        # Alone, a segment decodes with frame threads on every core (lowest latency); with
        # others in flight, one thread each (frame threading costs ~10% more CPU per frame,
        # and the pool's workers already keep the cores busy).
        with self._lock:
            self._in_flight += 1
            threads = 0 if self._in_flight == 1 else 1
        try:
            return self._decode(data, sampler, resize, crop, threads, window)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _decode(self, data, sampler, resize, crop, threads, window) -> DecodedClips:
        for attempt in (1, 2):
            pool = self._pool
            try:
                decoded, _ = pool.submit(_decode_job, data, sampler, resize, crop, threads,
                                         self.decoder, window).result()
                return decoded
            except BrokenProcessPool:
                # A worker died (a decoder can crash on hostile input), and with it every job in
                # flight: replace the pool and try once more, so the other requests survive;
                # a segment that crashes the decoder twice is rejected.
                with self._lock:
                    if self._pool is pool:
                        self._pool = self._new_pool()
                pool.shutdown(wait=False, cancel_futures=True)
        raise UndecodableVideo("the decoder crashed on this segment (corrupt video?)")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
