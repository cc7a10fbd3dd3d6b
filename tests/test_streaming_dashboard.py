"""The Grafana dashboard queries only metrics the code exports, and every operator metric of the
streaming issue has a panel."""

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import clipwatch.metrics  # noqa: F401  -- registers the metrics

DASHBOARD = Path(__file__).resolve().parents[1] / "infra" / "grafana" / "clipwatch-streaming.json"


def exported() -> set[str]:
    """Sample names of every registered metric, also those with labels and no samples yet."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",),
                "info": ("_info",)}
    return {family.name + suffix for family in REGISTRY.collect()
            for suffix in suffixes.get(family.type, ("",))}


def test_the_dashboard_queries_exported_metrics_and_covers_the_operator_ones():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(clipwatch_[a-z_]+)", e)}
    assert used <= exported(), used - exported()
    for operator_metric in ("clipwatch_stream_lag_seconds_bucket", "clipwatch_stream_stage_seconds_bucket",
                            "clipwatch_stream_segments_total", "clipwatch_consumer_lag",
                            "clipwatch_review_queue_depth", "clipwatch_stream_stalled"):
        assert operator_metric in used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in dashboard["panels"])
