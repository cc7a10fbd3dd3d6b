"""The open-loop generator. Requests are due at times fixed before the run (the profile) and
are handed to sender threads at those times whether or not earlier ones have answered; each
sample's latency is measured from its *scheduled* time. A slow server therefore cannot slow
the generator down and hide its own slowness (no coordinated omission): a request that waits
for a free sender, or behind a backlog, has that wait in its latency."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from .profiles import Stage, arrival_offsets
from .targets import Outcome, Target


@dataclass
class Sample:
    stage: int
    sequence: int
    scheduled: float          # seconds since the run's start, when the request was due
    sent: float = float("nan")  # when a sender thread actually sent it
    done: float = float("nan")
    code: str = "pending"
    http_status: int | None = None

    @property
    def ok(self) -> bool:
        return self.code == "ok"

    @property
    def completed(self) -> bool:
        return self.code != "pending"

    @property
    def latency_ms(self) -> float:
        return (self.done - self.scheduled) * 1000.0

    @property
    def service_ms(self) -> float:
        return (self.done - self.sent) * 1000.0

    @property
    def send_lag_ms(self) -> float:
        return (self.sent - self.scheduled) * 1000.0


@dataclass
class StageRun:
    """What happened during one stage: its samples and the wall window it occupied."""
    index: int
    stage: Stage
    start: float
    samples: list[Sample] = field(default_factory=list)
    end: float = float("nan")       # when its last response (or its drain limit) came


class OpenLoopGenerator:
    """Runs stages against a target. ``body_for(sequence)`` makes each request's body.

    ``max_in_flight`` bounds sender threads (and the client's connection pool); requests due
    while all senders are busy wait in the executor's queue, their wait counted as latency.
    ``drain`` waits for a stage's requests before the next starts (a staircase then measures
    each step from an empty queue); ``should_continue(stage_run)`` may stop after a stage.
    """

    def __init__(self, target: Target, body_for: Callable[[int], bytes], max_in_flight: int = 64,
                 timeout_s: float = 30.0, poisson: bool = False, seed: int = 0,
                 clock: Callable[[], float] = time.perf_counter):
        self.target = target
        self.body_for = body_for
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.poisson = poisson
        self.rng = random.Random(seed)
        self.clock = clock
        self._sequence = 0
        self._t0: float | None = None  # one time base for every run of this generator
        self._lock = threading.Lock()
        self.completed = 0
        self.errors = 0

    def _send(self, sample: Sample, t0: float) -> None:
        sample.sent = self.clock() - t0
        try:
            outcome = self.target.invoke(self.body_for(sample.sequence))
        except Exception as exc:  # a target bug must not lose the sample
            outcome = Outcome(False, f"client_error:{type(exc).__name__}")
        sample.done = self.clock() - t0
        sample.code, sample.http_status = outcome.code, outcome.http_status
        with self._lock:
            self.completed += 1
            self.errors += not outcome.ok

    def run(self, stages: list[Stage], drain: bool = False,
            should_continue: Callable[[StageRun], bool] | None = None,
            on_stage: Callable[[StageRun], None] | None = None,
            stop: threading.Event | None = None) -> list[StageRun]:
        runs: list[StageRun] = []
        stop = stop or threading.Event()
        with ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="loadtest") as pool:
            if self._t0 is None:
                self._t0 = self.clock()
            t0 = self._t0
            offset = 0.0
            for index, stage in enumerate(stages):
                if drain or index == 0:
                    offset = self.clock() - t0  # a drained stage starts when the last one settled
                run = StageRun(index, stage, offset)
                runs.append(run)
                if on_stage:
                    on_stage(run)
                futures = []
                for due in arrival_offsets(stage, offset, self.poisson, self.rng):
                    wait = due - (self.clock() - t0)
                    if wait > 0 and stop.wait(wait):
                        break
                    if stop.is_set():
                        break
                    sample = Sample(index, self._sequence, due)
                    self._sequence += 1
                    run.samples.append(sample)
                    futures.append(pool.submit(self._send, sample, t0))
                offset += stage.seconds
                if stop.is_set():
                    break
                if drain:
                    self._wait(futures, t0)
                    run.end = self.clock() - t0
                    if should_continue and not should_continue(run):
                        break
                else:
                    # keep the schedule: wait for the stage's end, not for its answers
                    remaining = offset - (self.clock() - t0)
                    if remaining > 0:
                        stop.wait(remaining)
            # an interrupted run cancels what was not sent yet; those samples stay "pending"
            pool.shutdown(wait=True, cancel_futures=stop.is_set())
            end = self.clock() - t0
            for run in runs:
                if run.end != run.end:
                    done = [s.done for s in run.samples if s.completed]
                    run.end = max([run.start + run.stage.seconds, *done]) if done else end
        return runs

    def _wait(self, futures, t0: float) -> None:
        # the HTTP client's own timeout bounds every request, so this wait ends
        for f in futures:
            f.result()
