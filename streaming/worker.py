"""The worker: take a segment event from the bus, have the endpoint classify and store it,
publish the prediction (and its review task), then commit.

At-least-once: the offset is committed only after the prediction is stored, so a worker that
dies mid-segment leaves it to another member of the group; the store's idempotent write makes
the repeat harmless (``stored`` is False the second time, counted as ``duplicate``).
Failures the endpoint says may pass are retried with jittered exponential backoff; after
``max_attempts`` (or at once, for a segment no retry can fix) the event goes to the
dead-letter topic with the reason, and the stream moves on. A stop request (SIGTERM) finishes
the segment in hand, commits it and leaves the group; one that arrives during a backoff hands
the segment back uncommitted instead of waiting.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from pydantic import ValidationError

from clipwatch import metrics
from clipwatch.records import Prediction, ReviewTask

from .bus import Bus, Message
from .clients import InvokeFailed
from .events import DeadLetter, SegmentEvent, Topics

log = logging.getLogger("clipwatch.worker")


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.cap_s, self.base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


class _Abandoned(Exception):
    """Stopping during a backoff: hand the segment back to the group uncommitted."""


class Worker:
    def __init__(self, bus: Bus, client, topics: Topics = Topics.with_prefix(), *,
                 group: str = "clipwatch-workers", max_attempts: int = 5,
                 backoff: Backoff = Backoff(), worker_id: str | None = None,
                 on_prediction: Callable[[SegmentEvent, Prediction], None] | None = None):
        self.bus, self.client, self.topics, self.group = bus, client, topics, group
        self.max_attempts, self.backoff = max(1, max_attempts), backoff
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.on_prediction = on_prediction
        self.stop = threading.Event()
        self.handled = 0  # messages finished and committed
        self.outcomes: Counter[str] = Counter()

    def run(self, stop: threading.Event | None = None) -> None:
        """Consume until ``stop`` (or ``self.stop``) is set."""
        stop = stop or self.stop
        self.stop = stop
        subscription = self.bus.subscribe([self.topics.segments], self.group)
        log.info("worker %s joined group %s on %s", self.worker_id, self.group, self.topics.segments)
        try:
            while not stop.is_set():
                try:
                    messages = subscription.poll(0.5)
                except Exception as exc:  # the broker went away: the client reconnects
                    metrics.BUS_ERRORS.labels("poll").inc()
                    log.warning("poll failed (%s); retrying", exc)
                    stop.wait(1.0)
                    continue
                for message in messages:
                    try:
                        self.outcomes[self.handle(message)] += 1
                    except _Abandoned:
                        subscription.retry(message)
                        break
                    except Exception as exc:  # publishing the result failed: do it again
                        metrics.BUS_ERRORS.labels("publish").inc()
                        log.warning("segment at %s[%d]@%d not finished (%s); retrying", message.topic,
                                    message.partition, message.offset, exc)
                        subscription.retry(message)
                        stop.wait(1.0)
                        break
                    self._commit(subscription, message)
                    self.handled += 1
                metrics.CONSUMER_LAG.labels(self.group).set(subscription.lag())
        finally:
            subscription.close()
            log.info("worker %s left group %s after %d segments", self.worker_id, self.group, self.handled)

    def _commit(self, subscription, message: Message) -> None:
        started = time.perf_counter()
        try:
            subscription.commit(message)
            metrics.STREAM_STAGE_SECONDS.labels("commit").observe(time.perf_counter() - started)
        except Exception as exc:  # a rebalance or the broker away: redelivered, stored once
            metrics.BUS_ERRORS.labels("commit").inc()
            log.warning("commit of %s[%d]@%d failed (%s); it may be redelivered (stored once)",
                        message.topic, message.partition, message.offset, exc)

    def handle(self, message: Message) -> str:
        """Process one message to an outcome: predicted, duplicate, dead_lettered, invalid_event."""
        try:
            event = SegmentEvent.model_validate_json(message.value)
        except ValidationError as exc:
            self._dead_letter(message.key, DeadLetter(
                error_code="invalid_event", message=f"not a segment event: {exc.errors()[0]['msg']}",
                attempts=1, worker=self.worker_id, raw=message.value.decode(errors="replace")[:4096]))
            metrics.STREAM_SEGMENTS.labels("invalid_event").inc()
            return "invalid_event"
        metrics.STREAM_STAGE_SECONDS.labels("queue").observe(max(0.0, time.time() - event.published_at))
        prediction = self._invoke(event)
        if prediction is None:
            return "dead_lettered"
        lag = max(0.0, time.time() - event.ready_at)
        self.bus.publish(self.topics.predictions, event.stream_id, prediction.model_dump_json().encode())
        if prediction.stored and prediction.review.needs_review:
            task = ReviewTask.for_prediction(prediction)
            self.bus.publish(self.topics.review_tasks, event.stream_id, task.model_dump_json().encode())
        outcome = "predicted" if prediction.stored is not False else "duplicate"
        metrics.STREAM_SEGMENTS.labels(outcome).inc()
        if outcome == "predicted":
            metrics.STREAM_LAG.observe(lag)
        log.info("%s %s#%d → %s (%.2f)%s, lag %.1f s", outcome, event.stream_id, event.sequence,
                 prediction.label, prediction.confidence,
                 " [review]" if prediction.review.needs_review else "", lag)
        if self.on_prediction:
            self.on_prediction(event, prediction)
        return outcome

    def _invoke(self, event: SegmentEvent) -> Prediction | None:
        """Failures count against ``max_attempts``; an overloaded endpoint (429, throttling) or
        one that is down (nothing answers, 502/503/504) does not: the segment waits as long as
        it takes (Retry-After, at least the backoff, capped) and is never dead-lettered for a
        fault that is not its own. Stopping hands it back to the group."""
        attempt = overloaded = 0
        while True:
            started = time.perf_counter()
            try:
                prediction = self.client.invoke(event.request())
                metrics.STREAM_STAGE_SECONDS.labels("invoke").observe(time.perf_counter() - started)
                return prediction
            except InvokeFailed as exc:
                if exc.overloaded or exc.endpoint_down:
                    overloaded += 1
                    delay = max(exc.retry_after_s or 0.0, self.backoff.delay(min(overloaded, 8)))
                    what = "overloaded" if exc.overloaded else "down"
                    log.warning("%s#%d: the endpoint is %s (%s); retrying in %.1f s", event.stream_id,
                                event.sequence, what, exc.message, delay)
                    metrics.STREAM_SEGMENTS.labels("throttled" if exc.overloaded else "endpoint_down").inc()
                else:
                    attempt += 1
                    if not exc.retryable or attempt >= self.max_attempts:
                        log.error("dead-lettering %s#%d after %d attempt(s): %s", event.stream_id,
                                  event.sequence, attempt, exc)
                        self._dead_letter(event.stream_id, DeadLetter(
                            error_code=exc.code, message=exc.message, attempts=attempt,
                            worker=self.worker_id, event=event))
                        metrics.STREAM_SEGMENTS.labels("dead_lettered").inc()
                        return None
                    delay = self.backoff.delay(attempt)
                    log.warning("%s#%d: %s; retry %d of %d in %.1f s", event.stream_id, event.sequence,
                                exc, attempt, self.max_attempts - 1, delay)
                    metrics.STREAM_SEGMENTS.labels("retried").inc()
                if self.stop.wait(delay):
                    raise _Abandoned()

    def _dead_letter(self, key: str, letter: DeadLetter) -> None:
        self.bus.publish(self.topics.dead_letter, key, letter.model_dump_json().encode())


class ReviewQueueProbe:
    """Sets the review queue depth gauge from the store every ``every_s`` (for workers that
    know the store; the endpoint creates the tasks)."""

    def __init__(self, store, every_s: float = 10.0, limit: int = 100_000):
        self.store, self.every_s, self.limit = store, every_s, limit

    def run(self, stop: threading.Event) -> None:
        while True:
            try:
                metrics.REVIEW_QUEUE_DEPTH.set(len(self.store.review_tasks("pending", limit=self.limit)))
            except Exception as exc:
                log.debug("review queue depth unavailable: %s", exc)
            if stop.wait(self.every_s):
                return
