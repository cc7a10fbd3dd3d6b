"""Drift, per stream: is this camera still showing what the model's guarantee was measured on?

The operating point's bound (``inference.routing``) holds for segments like the calibration
ones. A camera turned to a new scene breaks that quietly: confidence may even stay high. So the
endpoint keeps, per stream, the rolling mean of confidence and novelty, the median
evidence (``inference.signals``) and the review rate over
its last ``window`` segments, exported as Prometheus gauges beside the model's calibration
reference (``clipwatch_model_reference``); ``infra/prometheus/clipwatch-rules.yml`` alerts when a
stream leaves it, and the Grafana dashboard draws both.
"""

from __future__ import annotations

import statistics
import threading
from collections import deque

from clipwatch.metrics import (MODEL_REFERENCE, STREAM_CONFIDENCE, STREAM_EVIDENCE, STREAM_NOVELTY,
                               STREAM_REVIEW_RATE, STREAM_WINDOW)
from clipwatch.records import Prediction

WINDOW = 20  # segments: ~3 minutes of a 10 s-segment stream

class StreamDrift:
    """Rolling per-stream statistics of one model's predictions, exported as gauges."""

    def __init__(self, model_version: str, reference: dict | None, window: int = WINDOW):
        self.model, self.window = model_version, window
        self._recent: dict[str, deque] = {}
        self._lock = threading.Lock()
        self.references = [signal for signal, value in (reference or {}).items() if value is not None]
        for signal in self.references:
            MODEL_REFERENCE.labels(model_version, signal).set(reference[signal])

    def observe(self, p: Prediction) -> None:
        novelty = p.signals.novelty if p.signals is not None else None
        evidence = p.signals.evidence if p.signals is not None else None
        with self._lock:
            recent = self._recent.setdefault(p.stream_id, deque(maxlen=self.window))
            recent.append((p.confidence, novelty, p.review.needs_review, evidence))
            rows = list(recent)
        labels = (p.stream_id, self.model)
        STREAM_WINDOW.labels(*labels).set(len(rows))
        STREAM_CONFIDENCE.labels(*labels).set(sum(r[0] for r in rows) / len(rows))
        STREAM_REVIEW_RATE.labels(*labels).set(sum(r[2] for r in rows) / len(rows))
        known = sorted(r[3] for r in rows if r[3] is not None)
        if known:  # a median: evidence is heavy-tailed (one clear segment reads 400, most 5–20)
            STREAM_EVIDENCE.labels(*labels).set(statistics.median(known))
        novel = [r[1] for r in rows if r[1] is not None]
        if novel:
            STREAM_NOVELTY.labels(*labels).set(sum(novel) / len(novel))

    def forget(self) -> None:
        """Drop this model's series, once it no longer serves (a promoted model replaced it):
        a stale window would keep an alert firing for a model nobody runs."""
        with self._lock:
            streams, self._recent = list(self._recent), {}
        for gauge in (STREAM_WINDOW, STREAM_CONFIDENCE, STREAM_REVIEW_RATE, STREAM_EVIDENCE, STREAM_NOVELTY):
            for stream in streams:
                try:
                    gauge.remove(stream, self.model)
                except KeyError:  # never set (no evidence or novelty for this stream)
                    pass
        for signal in self.references:
            MODEL_REFERENCE.remove(self.model, signal)
