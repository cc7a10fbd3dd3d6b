"""Follower and worker in one process: over the in-process bus, the embedded default that
``clipwatch watch`` (without ``--bus``) and ``clipwatch demo`` run; over Kafka for
``clipwatch demo --bus kafka://…``. Same classes as the distributed setup."""

from __future__ import annotations

import logging
import threading

from .bus import Bus
from .follower import Follower
from .worker import Worker

log = logging.getLogger("clipwatch.embedded")


class EmbeddedPipeline:
    def __init__(self, follower: Follower, worker: Worker, bus: Bus, wait_for_stream: bool = True):
        self.follower, self.worker, self.bus = follower, worker, bus
        self.wait_for_stream = wait_for_stream
        self.error: BaseException | None = None
        self._stop_following, self._stop_working = threading.Event(), threading.Event()
        self._threads = [threading.Thread(target=self._follow, name="follower", daemon=True),
                         threading.Thread(target=worker.run, args=(self._stop_working,),
                                          name="worker", daemon=True)]

    def _follow(self) -> None:
        try:
            self.follower.run(self._stop_following, wait_for_stream=self.wait_for_stream)
        except BaseException as exc:  # reported by wait(); the worker drains what was emitted
            self.error = exc

    def start(self) -> "EmbeddedPipeline":
        for t in self._threads:
            t.start()
        return self

    @property
    def following(self) -> bool:
        return self._threads[0].is_alive()

    def drained(self) -> bool:
        """Every segment event the follower emitted is handled (committed) by the worker."""
        return self.worker.handled >= self.follower.emitted

    def finished(self) -> bool:
        return not self.following and self.drained()

    def wait(self, stop: threading.Event, poll_s: float = 0.2) -> None:
        """Until the stream ended and every segment is handled, or ``stop``."""
        while not self.finished() and not stop.wait(poll_s):
            pass

    def stop(self) -> None:
        self._stop_following.set()
        self._stop_working.set()
        for t in self._threads:
            t.join(timeout=120)
