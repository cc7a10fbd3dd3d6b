"""Prometheus metric names for the endpoint, defined once (prometheus-client registers them in
its default registry, so each exists exactly once per process)."""

from prometheus_client import Counter, Gauge, Histogram, Info

# Phases of one invocation, in order; "total" is the whole request.
PHASES = ("fetch", "decode", "preprocess", "model", "store", "total")

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
DUPLICATES = Counter(
    "clipwatch_predictions_duplicate_total",
    "Predictions not written because the same segment and model version was already stored",
)
MODEL_INFO = Info("clipwatch_model", "The loaded model: version, architecture, device, backend")
