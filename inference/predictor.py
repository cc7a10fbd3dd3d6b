"""One invocation, top to bottom: fetch → decode → preprocess → model → summarize →
(for a segment going to review) propose segments → store.

This is the whole serving contract; the HTTP server, the SageMaker entry script and the
in-process worker client all call ``Endpoint.invoke``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from clipwatch import metrics
from clipwatch.blobs import SegmentReader
from clipwatch.config import Settings
from clipwatch.records import InvocationRequest, LabelScore, Prediction, SegmentRef
from clipwatch.review_policy import ReviewPolicy
from clipwatch.store import PredictionStore, open_store, save_prediction

from .batching import DynamicBatcher
from .decode import DEFAULT_DECODER, decode_clips
from .decode_pool import DecodePool
from .model import Classifier
from .presegment import presegment
from .preprocess import center_crop_clips, normalize_clips
from .scoring import embed, summarize


@dataclass
class Timer:
    ms: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.ms[name] = round(seconds * 1000.0, 2)
            metrics.PHASE_SECONDS.labels(name).observe(seconds)


class Endpoint:
    def __init__(self, classifier: Classifier, reader: SegmentReader,
                 store: PredictionStore | None, policy: ReviewPolicy = ReviewPolicy(),
                 clips: int = 1, snap_to_keyframe: bool = True, top_k: int = 5,
                 decode_workers: int = 0, max_batch_clips: int = 4, decoder: str = DEFAULT_DECODER,
                 propose: bool = True):
        """``decode_workers`` > 0 decodes in that many worker processes (``inference.decode_pool``),
        0 in the calling thread, with ``decoder`` (``inference.decode``); concurrent invocations
        share batched forwards of up to ``max_batch_clips`` clips (``inference.batching``).
        ``propose``: segments routed to review also get the model's proposed segments
        (``inference.presegment``; a window per half clip span, so ~2× the clip's model cost per
        clip span of video, paid only for the segments people will look at)."""
        spec = classifier.card.input
        self.classifier, self.reader, self.store, self.policy = classifier, reader, store, policy
        self.sampler = spec.sampler(clips, snap_to_keyframe)
        self.top_k = top_k
        self.decoder = decoder
        self.propose = propose
        self.max_batch_clips = max_batch_clips
        self.decode_pool = DecodePool(decode_workers, decoder=decoder) if decode_workers > 0 else None
        self.model = DynamicBatcher(classifier.infer, max(max_batch_clips, clips))
        metrics.MODEL_INFO.info({
            "version": classifier.card.version, "architecture": classifier.card.architecture,
            "device": classifier.device, "backend": classifier.backend,
            "classes": str(len(classifier.classes))})

    def warm_up(self) -> None:
        """Start the decode workers and run one forward, before the first request."""
        if self.decode_pool is not None:
            self.decode_pool.warm_up()
        self.classifier.warm_up()

    def close(self) -> None:
        """Stop the model thread and the decode workers."""
        self.model.close()
        if self.decode_pool is not None:
            self.decode_pool.close()

    @classmethod
    def from_settings(cls, classifier: Classifier, settings: Settings, **kw) -> "Endpoint":
        reader = SegmentReader(settings.allowed_buckets, settings.allowed_dirs,
                               settings.max_segment_bytes)
        return cls(classifier, reader, open_store(settings.store_url), settings.review, **kw)

    def invoke(self, request: InvocationRequest) -> Prediction:
        segment = request.segment()
        timer = Timer()
        spec = self.classifier.card.input
        with timer.phase("total"):
            with timer.phase("fetch"):
                data = self.reader.read(segment.uri)
            with timer.phase("decode"):  # includes the center crop
                if self.decode_pool is not None:
                    decoded = self.decode_pool.decode(data, self.sampler, spec.resize, spec.crop)
                else:
                    decoded = decode_clips(data, self.sampler, spec.resize, decoder=self.decoder)
                    decoded.frames = center_crop_clips(decoded.frames, spec.crop)
            with timer.phase("preprocess"):
                batch = normalize_clips(decoded.frames, spec.crop, spec.mean, spec.std)
            with timer.phase("model"):  # includes waiting for a batch slot under load
                logits, features = self.model(batch)
            prediction = self._prediction(segment, logits, decoded.indices, timer.ms)
            prediction.embedding = embed(features)
            if self.propose and prediction.review.needs_review:
                with timer.phase("presegment"):
                    prediction.presegmentation = presegment(
                        data, self.model, self.classifier.classes, spec, self.classifier.card.temperature,
                        decoder=self.decoder, max_batch=self.max_batch_clips)
            del data
            with timer.phase("store"):
                if self.store is not None:
                    task = save_prediction(self.store, prediction)
                    if task is not None:
                        metrics.REVIEW_TASKS.inc()
                    if not prediction.stored:
                        metrics.DUPLICATES.inc()
        prediction.timings_ms = dict(timer.ms)
        return prediction

    def _prediction(self, segment: SegmentRef, logits: np.ndarray, frames: list[list[int]],
                    timings: dict[str, float]) -> Prediction:
        card, classes = self.classifier.card, self.classifier.classes
        s = summarize(logits, card.temperature, self.top_k)
        return Prediction(
            stream_id=segment.stream_id, sequence=segment.sequence, segment_uri=segment.uri,
            start_time=segment.start_time, model_version=card.version,
            model_created_at=card.created_at, label=classes[s.top[0]],
            confidence=s.confidence, margin=s.margin, entropy=s.entropy,
            top_k=[LabelScore(label=classes[i], probability=float(s.probabilities[i])) for i in s.top],
            frames=frames, device=self.classifier.device, timings_ms=dict(timings),
            review=self.policy.decide(s.confidence, s.margin, entropy=s.entropy,
                                      label=classes[s.top[0]], stream_id=segment.stream_id,
                                      sequence=segment.sequence, store=self.store))
