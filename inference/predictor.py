"""One invocation, top to bottom: fetch → decode → preprocess → model → summarize → signals →
route → store; then the temporal check of its neighbours, and, for a segment going to review,
its proposed segments in the background (``Proposer``).

This is the whole serving contract; the HTTP server, the SageMaker entry script and the
in-process worker client all call ``Endpoint.invoke``. The model behind it can be swapped while
it serves (a promotion, ``inference.deployment``): each invocation runs start to end on the
``LoadedModel`` it began with.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from clipwatch import metrics
from clipwatch.blobs import SegmentReader
from clipwatch.config import AutoInt8Settings, Settings
from clipwatch.records import InvocationRequest, LabelScore, Prediction, RoutingSignals, SegmentRef
from clipwatch.review_policy import ReviewPolicy
from clipwatch.store import PredictionStore, flag_for_review, open_store, save_prediction

from .auto_int8 import AutoInt8
from .batching import DynamicBatcher
from .decode import DEFAULT_DECODER, decode_clips
from .decode_pool import DecodePool
from .deployment import DeploymentWatcher
from .drift import StreamDrift
from .model import Classifier, InputSpec
from .presegment import presegment
from .preprocess import center_crop_clips, normalize_clips
from .routing import SECOND_CLIP_BELOW, RoutingCard, contradicted
from .scoring import Summary, embed, softmax, summarize
from .signals import evidence, motion_energy

log = logging.getLogger("clipwatch.endpoint")

# Endpoints not closed yet. Closed at exit by a hook registered when the first one is made
# (after MXNet/torch registered theirs, so it runs before they shut down): threads left inside
# a forward when the interpreter tears the runtimes down abort the process.
open_endpoints: "weakref.WeakSet[Endpoint]" = weakref.WeakSet()


def _close_open_endpoints() -> None:
    for endpoint in list(open_endpoints):
        endpoint.close(finish_proposals=False)


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


class LoadedModel:
    """A model and what is built around it: its clip sampler, its batcher (one model thread)
    and its drift gauges. An invocation holds the one it started with, so a
    swap (``Endpoint.swap``) never changes the model under it; a replaced one is closed when
    the last invocation or proposal holding it lets go."""

    def __init__(self, classifier: Classifier, clips: int, snap_to_keyframe: bool, max_batch_clips: int,
                 auto_int8: AutoInt8Settings | None = None):
        card = classifier.card
        self.classifier = classifier
        self.sampler = card.input.sampler(clips, snap_to_keyframe)
        # int8 learnt from the served clips, switched to once checked (inference.auto_int8)
        self.int8 = AutoInt8(classifier, auto_int8) if auto_int8 is not None else None
        self.model = DynamicBatcher(self.int8.infer if self.int8 is not None else classifier.infer,
                                    max(max_batch_clips, clips))
        self.drift = StreamDrift(card.version, card.routing.reference if card.routing else None)
        self._users, self._retired = 0, False
        self._lock = threading.Lock()

    def hold(self) -> "LoadedModel":
        with self._lock:
            self._users += 1
        return self

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._retired and self._users == 0
        if last:
            self._close()

    def retire(self) -> None:
        """No new work comes; close once the work in hand is done."""
        with self._lock:
            self._retired = True
            idle = self._users == 0
        if idle:
            self._close()

    @property
    def precision(self) -> dict:
        """Which precision serves and why (/ping)."""
        if self.int8 is not None:
            return self.int8.status
        return {"serving": self.classifier.backend, "auto_int8": "off",
                "reason": "automatic int8 is not enabled for this endpoint"}

    def _close(self) -> None:
        if self.int8 is not None:
            self.int8.close()
        self.model.close()
        self.drift.forget()


class Endpoint:
    def __init__(self, classifier: Classifier, reader: SegmentReader,
                 store: PredictionStore | None, policy: ReviewPolicy = ReviewPolicy(),
                 clips: int = 1, snap_to_keyframe: bool = True, top_k: int = 5,
                 decode_workers: int = 0, max_batch_clips: int = 4, decoder: str = DEFAULT_DECODER,
                 propose: bool = True, auto_int8: AutoInt8Settings | None = None,
                 second_clip: bool | None = None):
        """``decode_workers`` > 0 decodes in that many worker processes (``inference.decode_pool``),
        0 in the calling thread, with ``decoder`` (``inference.decode``); concurrent invocations
        share batched forwards of up to ``max_batch_clips`` clips (``inference.batching``).
        ``propose``: segments routed to review also get the model's proposed segments
        (``inference.presegment``), attached to the stored prediction in the background.
        ``auto_int8``: a model served on its safe precision calibrates and checks int8 on the
        clips it serves and switches to it once checked (``inference.auto_int8``); None: never.
        ``second_clip``: run a second clip for a doubtful one-clip segment (its disagreement
        signal); None: only when the serving model's review score uses it (a routing card) —
        another forward for most segments of a 400-class model, for a signal nothing reads;
        True: always (``clipwatch evaluate --routing`` collects it to fit a score)."""
        self.reader, self.store, self.policy = reader, store, policy
        self.top_k = top_k
        self.decoder = decoder
        self.second_clip = second_clip
        self._shape = (clips, snap_to_keyframe, max_batch_clips, auto_int8)
        self._lock = threading.Lock()
        self.active = self._load(classifier)
        self.watcher = None
        self.proposer = Proposer(self) if propose and store is not None else None
        self.decode_pool = DecodePool(decode_workers, decoder=decoder) if decode_workers > 0 else None
        self.closed = False
        if not open_endpoints:
            atexit.unregister(_close_open_endpoints)
            atexit.register(_close_open_endpoints)
        open_endpoints.add(self)

    def _load(self, classifier: Classifier) -> LoadedModel:
        loaded = LoadedModel(classifier, *self._shape)
        log.info("model %s: review routing by %s", classifier.card.version, classifier.routing_status)
        metrics.MODEL_INFO.info(classifier.info)
        return loaded

    @property
    def classifier(self) -> Classifier:
        """The model serving new invocations."""
        return self.active.classifier

    @property
    def routing(self) -> RoutingCard | None:
        """The serving model's review score (None: the fallback thresholds)."""
        return self.classifier.routing

    def swap(self, classifier: Classifier) -> None:
        """Serve ``classifier`` from the next invocation on, warmed up first; the invocations
        (and proposals) in flight finish on the model they started with."""
        classifier.warm_up()
        loaded = self._load(classifier)
        with self._lock:
            old, self.active = self.active, loaded
        old.retire()
        metrics.MODEL_SWAPS.inc()
        log.info("now serving %s (was %s)", classifier.card.version, old.classifier.card.version)

    def follow(self, deployment, load, interval: float = 2.0) -> None:
        """Serve whatever ``deployment`` (``inference.deployment``) points to, switching when
        it is promoted; ``load(dir)`` loads a model directory the way the first was loaded."""
        self.watcher = DeploymentWatcher(deployment, lambda path: self.swap(load(path)), interval,
                                         serving=self.classifier.directory).start()

    def _hold(self) -> LoadedModel:
        with self._lock:  # a swap between reading and holding would close it under us
            return self.active.hold()

    def warm_up(self) -> None:
        """Start the decode workers and run one forward, before the first request."""
        if self.decode_pool is not None:
            self.decode_pool.warm_up()
        self.classifier.warm_up()

    def close(self, finish_proposals: bool = True) -> None:
        """Stop following the deployment, finish the proposals in hand (or only the one
        running), then stop the model thread and the decode workers. Once; later calls return."""
        if self.closed:
            return
        self.closed = True
        open_endpoints.discard(self)
        if self.watcher is not None:
            self.watcher.stop()
        if self.proposer is not None:
            self.proposer.close(finish=finish_proposals)
        self.active.retire()
        if self.decode_pool is not None:
            self.decode_pool.close()

    @classmethod
    def from_settings(cls, classifier: Classifier, settings: Settings, **kw) -> "Endpoint":
        reader = SegmentReader(settings.allowed_buckets, settings.allowed_dirs,
                               settings.max_segment_bytes)
        kw.setdefault("auto_int8", settings.auto_int8)
        return cls(classifier, reader, open_store(settings.store_url), settings.review, **kw)

    def invoke(self, request: InvocationRequest) -> Prediction:
        m = self._hold()
        try:
            return self._invoke(request, m)
        finally:
            m.release()

    def _invoke(self, request: InvocationRequest, m: LoadedModel) -> Prediction:
        segment = request.segment()
        task = None
        timer = Timer()
        card = m.classifier.card
        with timer.phase("total"):
            with timer.phase("fetch"):
                data = self.reader.read(segment.uri)
            with timer.phase("decode"):  # includes the center crop
                decoded = self._decode(data, m.sampler, card.input)
            with timer.phase("preprocess"):
                batch = normalize_clips(decoded.frames, card.input.crop, card.input.mean, card.input.std)
            with timer.phase("model"):  # includes waiting for a batch slot under load
                logits, features = m.model(batch)
            summary = summarize(logits, card.temperature, self.top_k)
            embedding = embed(features)
            with timer.phase("signals"):  # includes the second clip of a doubtful segment
                signals = self._signals(m, data, decoded, summary, logits, batch, embedding)
            prediction = self._prediction(m, segment, summary, decoded.indices, timer.ms, signals)
            prediction.embedding = embedding
            m.drift.observe(prediction)
            with timer.phase("store"):
                if self.store is not None:
                    task = save_prediction(self.store, prediction)
                    if task is not None:
                        metrics.REVIEW_TASKS.inc()
                    if not prediction.stored:
                        metrics.DUPLICATES.inc()
                    else:
                        self._check_neighbours(prediction)
            if self.proposer is not None and task is not None:
                self.proposer.submit(prediction, data, m)
            del data
        prediction.timings_ms = dict(timer.ms)
        return prediction

    def _signals(self, m: LoadedModel, data: bytes, decoded, summary: Summary, logits: np.ndarray,
                 batch: np.ndarray, embedding: list[float]) -> RoutingSignals:
        """Novelty against the model's reference bank, evidence, motion, and — when the first clip gives
        its label less than ``SECOND_CLIP_BELOW`` — a second opinion: the other clips of a
        multi-clip request, else one clip from the segment's first half (``second_clip``)."""
        label = summary.top[0]
        temperature = m.classifier.card.temperature
        signals = RoutingSignals(evidence=evidence(logits, temperature), motion=motion_energy(batch))
        bank = m.classifier.reference
        if bank is not None:
            signals.novelty = bank.novelty(embedding)
            signals.class_novelty = bank.class_novelty(embedding, label)
        if summary.confidence >= SECOND_CLIP_BELOW:
            return signals
        if len(logits) > 1:
            others = softmax(logits, temperature)
        elif not (self.second_clip if self.second_clip is not None else m.classifier.routing is not None):
            return signals
        else:
            others = self._second_clip(m, data, decoded)
            if others is None:
                return signals
            others = softmax(others, temperature)
        signals.disagreement = round(float(1.0 - others[:, label].min()), 6)
        signals.second_clip_label = m.classifier.classes[int(others.mean(axis=0).argmax())]
        return signals

    def _decode(self, data: bytes, sampler, spec: InputSpec, window: tuple[float, float] | None = None):
        """The sampled frames, center-cropped: in the decode workers when there are some (a
        decoder that crashes takes a worker down, not the endpoint), else in this thread."""
        if self.decode_pool is not None:
            return self.decode_pool.decode(data, sampler, spec.resize, spec.crop, window)
        decoded = decode_clips(data, sampler, spec.resize, window=window, decoder=self.decoder)
        decoded.frames = center_crop_clips(decoded.frames, spec.crop)
        return decoded

    def _second_clip(self, m: LoadedModel, data: bytes, decoded) -> np.ndarray | None:
        """Logits of one clip centred in the segment's first half, or None when that half is
        shorter than a clip (a short segment: no second opinion, the score does without)."""
        spec = m.classifier.card.input
        half = decoded.num_frames / decoded.fps / 2.0 if decoded.fps else 0.0
        try:
            second = self._decode(data, spec.sampler(1, m.sampler.snap_to_keyframe), spec, (0.0, half))
        except Exception:  # noqa: BLE001 -- too short or undecodable there: the first answer stands
            return None
        return m.model(normalize_clips(second.frames, spec.crop, spec.mean, spec.std))[0]

    def _check_neighbours(self, p: Prediction) -> None:
        """Temporal context, known only once a neighbour is in: a stored auto-accepted segment
        whose two neighbours agree with each other and not with it goes to review late. The
        segment just stored may be either neighbour, or the middle itself (events arrive out of
        order). A failure here is logged, never the invocation's: its prediction is stored."""
        try:
            around = {q.sequence: q for q in self.store.timeline(p.stream_id, max(0, p.sequence - 2),
                                                                 p.sequence + 2)}
            self._flag_contradicted(p, around)
        except Exception:  # noqa: BLE001
            log.exception("temporal check around %s #%s failed", p.stream_id, p.sequence)

    def _flag_contradicted(self, p: Prediction, around: dict[int, Prediction]) -> None:
        for middle in (p.sequence - 1, p.sequence, p.sequence + 1):
            m = around.get(middle)
            if m is None or m.review.needs_review:
                continue
            before, after = around.get(middle - 1), around.get(middle + 1)
            if contradicted(before, m, after):
                reason = (f"temporal: {m.label} between two segments labelled {before.label} "
                          f"(#{before.sequence}, #{after.sequence})")
                if flag_for_review(self.store, m, "temporal", reason) is not None:
                    metrics.REVIEW_TASKS.inc()
                    metrics.REVIEW_ROUTING.labels("temporal").inc()

    def _prediction(self, m: LoadedModel, segment: SegmentRef, s: Summary, frames: list[list[int]],
                    timings: dict[str, float], signals: RoutingSignals) -> Prediction:
        card, classes = m.classifier.card, m.classifier.classes
        p = Prediction(
            stream_id=segment.stream_id, sequence=segment.sequence, segment_uri=segment.uri,
            start_time=segment.start_time, model_version=card.version,
            model_created_at=card.created_at, label=classes[s.top[0]],
            confidence=s.confidence, margin=s.margin, entropy=s.entropy,
            top_k=[LabelScore(label=classes[i], probability=float(s.probabilities[i])) for i in s.top],
            frames=frames, device=m.classifier.device, timings_ms=dict(timings),
            signals=signals, review={"needs_review": False})
        routing = m.classifier.routing
        scored = routing.verdict(p) if routing is not None else None
        p.review = self.policy.decide(s.confidence, s.margin, entropy=s.entropy, label=p.label,
                                      stream_id=segment.stream_id, sequence=segment.sequence,
                                      store=self.store, scored=scored)
        return p


class Proposer:
    """Proposed segments for the segments routed to review, computed after the prediction is
    answered and stored (a span-wide window every quarter span costs ~10–40 forwards: 0.2 s for
    the demo model, ~15 s for the Kinetics I3D on a 10 s segment, too long to hold a caller),
    then attached to the stored prediction. One at a time, through the endpoint's batcher, so
    live requests interleave with its forwards; at most ``max_pending`` wait (each holds its
    segment's bytes), more are skipped and counted. ``close()`` must run before the process
    exits: a daemon thread still inside MXNet or torch when the interpreter tears them down
    aborts the process (SIGABRT, "terminate called without an active exception"); endpoints
    left open are closed at exit, dropping the proposals not yet started (``open_endpoints``)."""

    def __init__(self, endpoint: "Endpoint", max_pending: int = 4):
        self.endpoint, self.max_pending = endpoint, max_pending
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self.pending = 0
        self._thread = threading.Thread(target=self._work, daemon=True, name="proposals")
        self._thread.start()

    def submit(self, prediction: Prediction, data: bytes, m: LoadedModel) -> bool:
        """Propose segments for ``prediction`` with ``m``, the model that made it."""
        with self._lock:
            if self.pending >= self.max_pending:
                metrics.PROPOSALS.labels("busy").inc()
                return False
            self.pending += 1
        self._jobs.put((prediction.stream_id, prediction.sequence, m.hold(), data))
        return True

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._propose(*job)
            finally:
                with self._lock:
                    self.pending -= 1

    def _propose(self, stream_id: str, sequence: int, m: LoadedModel, data: bytes) -> None:
        e, card = self.endpoint, m.classifier.card
        try:
            started = time.perf_counter()
            pre = presegment(data, m.model, m.classifier.classes, card.input, card.temperature,
                             decoder=e.decoder, max_batch=m.model.max_clips)
            metrics.PHASE_SECONDS.labels("presegment").observe(time.perf_counter() - started)
            stored = e.store.attach_presegmentation(stream_id, sequence, card.version, pre)
            metrics.PROPOSALS.labels("stale" if not stored else "stored" if pre.proposals else "none").inc()
        except Exception:  # noqa: BLE001 -- a proposal is a help, never a reason to fail serving
            log.exception("proposals for %s #%s failed", stream_id, sequence)
            metrics.PROPOSALS.labels("failed").inc()
        finally:
            m.release()

    def close(self, finish: bool = True, timeout: float = 600.0) -> None:
        """Finish the proposals in hand (or, ``finish=False``, only the one running; the others
        are dropped and counted), then stop; waits at most ``timeout`` seconds."""
        if not finish:
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    continue
                job[2].release()
                metrics.PROPOSALS.labels("dropped").inc()
                with self._lock:
                    self.pending -= 1
        self._jobs.put(None)
        self._thread.join(timeout)
