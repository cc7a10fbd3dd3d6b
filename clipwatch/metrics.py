"""Prometheus metric names for the endpoint, defined once (prometheus-client registers them in
its default registry, so each exists exactly once per process)."""

from prometheus_client import Counter, Enum, Gauge, Histogram, Info

# Phases of one invocation, in order; "total" is the whole request.
PHASES = ("fetch", "decode", "preprocess", "model", "signals", "store", "total")

PHASE_SECONDS = Histogram(
    "clipwatch_endpoint_phase_seconds", "Time spent per phase of one invocation", ["phase"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 21),
)
INVOCATIONS = Counter(
    "clipwatch_endpoint_invocations_total", "Invocations by outcome (ok or an error code)",
    ["outcome"],
)
IN_FLIGHT = Gauge("clipwatch_endpoint_in_flight", "Invocations being processed now")
REVIEW_TASKS = Counter("clipwatch_review_tasks_created_total", "Review tasks created")
PROPOSALS = Counter("clipwatch_proposals_total", "Segments routed to review and what became of their "
                    "proposed segments: stored, none (the note says why), busy (skipped: the proposer's "
                    "queue was full), failed, stale (the prediction changed meanwhile), dropped (not started "
                    "when the process stopped)", ["outcome"])
DUPLICATES = Counter(
    "clipwatch_predictions_duplicate_total",
    "Predictions not written because the same segment and model version was already stored",
)
MODEL_INFO = Info("clipwatch_model", "The loaded model: version, architecture, device, backend")
AUTO_INT8 = Enum("clipwatch_auto_int8", "The fast path learnt while serving (inference.auto_int8): off, "
                 "choosing (timing OpenVINO against torch), calibrating, "
                 "checking (against the served precision), int8 (switched), failed (stays on the safe "
                 "precision; /ping says why)",
                 states=["off", "choosing", "calibrating", "checking", "int8", "failed"])
MODEL_SWAPS = Counter("clipwatch_model_swaps_total", "Times a promoted model replaced the serving one "
                      "without a restart (inference.deployment)")
TIE_RECHECKS = Counter(
    "clipwatch_endpoint_tie_rechecks_total",
    "Clips whose bf16/int8 top-2 logits were closer than the model's tie margin, settled in fp32",
)
BATCH_CLIPS = Histogram(
    "clipwatch_endpoint_batch_clips", "Clips per model forward (concurrent requests batched)",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16),
)

# --- Live streaming (streaming/): what an operator watches -------------------------------------

STREAM_LAG = Histogram(
    "clipwatch_stream_lag_seconds",
    "End-to-end lag: segment end (listed complete in the playlist) to prediction stored",
    buckets=(0.25, 0.5, 1, 1.5, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144),
)
# Stages a segment passes: playlist (reload), download (+ spool/upload), publish (to the bus),
# queue (published → picked up by a worker), invoke (endpoint, stored), commit (bus offset).
STREAM_STAGE_SECONDS = Histogram(
    "clipwatch_stream_stage_seconds", "Time per stage of a live segment", ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34),
)
STREAM_SEGMENTS = Counter(
    "clipwatch_stream_segments_total",
    "Live segments by outcome (emitted, missed, download_failed, unsupported, predicted, duplicate, "
    "retried, throttled, dead_lettered, invalid_event)", ["outcome"],
)
PLAYLIST_EVENTS = Counter(
    "clipwatch_playlist_events_total",
    "Playlist reloads that were not plain progress: errors by reason, reset, stale, ended, "
    "discontinuity", ["event"],
)
STREAMS_STALLED = Gauge("clipwatch_stream_stalled", "1 while a stream has had no new segment for "
                        "3 target durations", ["stream"])
STREAM_STALLS = Counter("clipwatch_stream_stalls_total", "Times a stream stalled", ["stream"])
OUTBOX_PENDING = Gauge("clipwatch_stream_outbox_pending", "Segments kept but not yet published to the bus "
                       "(the bus is down or slow)", ["stream"])
OUTBOX_FULL = Counter("clipwatch_stream_outbox_full_total", "Times the outbox filled up, so downloading "
                      "paused until the bus took events again", ["stream"])
CONSUMER_LAG = Gauge("clipwatch_consumer_lag", "Segment events waiting for this worker's group "
                     "(end offset minus position, summed over its partitions)", ["group"])
BUS_ERRORS = Counter("clipwatch_bus_errors_total", "Bus operations that failed (and were retried)",
                     ["operation"])
# Drift per stream (inference.drift): rolling means over a stream's last segments, beside the
# model's calibration reference; infra/prometheus/clipwatch-rules.yml alerts on them.
STREAM_CONFIDENCE = Gauge("clipwatch_stream_confidence_mean", "Mean calibrated confidence of the "
                          "stream's last segments", ["stream", "model"])
STREAM_NOVELTY = Gauge("clipwatch_stream_novelty_mean", "Mean novelty (distance to the model's "
                       "training clips) of the stream's last segments", ["stream", "model"])
STREAM_REVIEW_RATE = Gauge("clipwatch_stream_review_rate", "Share of the stream's last segments "
                           "routed to review", ["stream", "model"])
STREAM_WINDOW = Gauge("clipwatch_stream_window_segments", "Segments in the stream's rolling "
                      "window (the means above are over these)", ["stream", "model"])
STREAM_EVIDENCE = Gauge("clipwatch_stream_evidence_median", "Median evidence (log-sum-exp of the "
                        "calibrated logits) of the stream's last segments", ["stream", "model"])
MODEL_REFERENCE = Gauge("clipwatch_model_reference", "The model's calibration reference: "
                        "confidence_mean, novelty_mean, novelty_p95, evidence_median, evidence_stream_p05, "
                        "review_rate", ["model", "signal"])
REVIEW_QUEUE_DEPTH = Gauge("clipwatch_review_queue_depth", "Pending review tasks in the store")

# Human review (review/): routing at write time, the web tool's requests, labels submitted.
REVIEW_ROUTING = Counter(
    "clipwatch_review_routing_total",
    "Review policy decisions: uncertain, sample (confident, drawn for an accuracy check), "
    "temporal (auto-accepted, then contradicted by both neighbours), "
    "over_budget (would be reviewed, budget spent) or auto (accepted)", ["decision"],
)
REVIEW_REQUESTS = Counter(
    "clipwatch_review_requests_total", "Review tool API requests by route and outcome (ok or an "
    "error code)", ["route", "outcome"],
)
REVIEW_ANNOTATIONS = Counter(
    "clipwatch_review_annotations_total", "Annotations submitted, by role", ["role"],
)
REVIEW_AGREEMENT = Histogram(
    "clipwatch_review_audit_label_iou", "Reviewer–auditor agreement (label IoU) per audit",
    buckets=(0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
