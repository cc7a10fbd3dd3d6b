"""Drift per stream: a stream whose camera turns to something new raises the alert.

The endpoint serves two streams: one keeps showing scenes like the model's training data, the
other turns, after a few segments, to real footage the model has never seen. After every
segment the Prometheus exposition text is scraped (what a Prometheus server would read); the
scraped gauges become the input series of a ``promtool test rules`` unit test of
``infra/prometheus/clipwatch-rules.yml`` itself, which must fire ``ClipwatchStreamWeakEvidence``
for the turned stream only, and nothing before the windows have filled. (With the demo model,
novelty does not separate real footage: its features for it are weak, near its static scenes;
``inference.signals`` has the figures.)"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from clipwatch.blobs import SegmentReader
from clipwatch.records import InvocationRequest

RULES = Path(__file__).resolve().parents[1] / "infra" / "prometheus" / "clipwatch-rules.yml"
DRIFT_METRICS = ("clipwatch_stream_novelty_mean", "clipwatch_stream_evidence_median",
                 "clipwatch_stream_confidence_mean",
                 "clipwatch_stream_review_rate", "clipwatch_stream_window_segments",
                 "clipwatch_model_reference")


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: `make test` installs Debian's prometheus package (system-deps)"
    return path


def scrape(model: str, streams: tuple[str, ...]) -> dict[str, float]:
    """The drift gauges of ``model`` and ``streams`` as the exposition text gives them, keyed by
    series (the process's other tests leave gauges of their own streams behind)."""
    out = {}
    for family in text_string_to_metric_families(generate_latest().decode()):
        for s in family.samples:
            if (s.name in DRIFT_METRICS and s.labels.get("model") == model
                    and s.labels.get("stream", streams[0]) in streams):
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
    return out


def test_the_rules_file_loads_in_prometheus():
    run = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 rules found" in run.stdout


def test_a_stream_whose_camera_turns_to_something_new_raises_the_alert(routed_model, real_segments, tmp_path):
    from inference.model import load_classifier
    from inference.predictor import Endpoint
    from training.routing import find_streams, read_truth

    model_dir, _ = routed_model
    classifier = load_classifier(model_dir)
    model = classifier.card.version
    synthetic = [s / r["file"] for s in find_streams(model_dir.parent / "streams") for r in read_truth(s)]
    real = list(real_segments.values())
    allowed = (synthetic[0].parents[1].resolve(), real[0].parent.resolve())
    endpoint = Endpoint(classifier, SegmentReader(allowed_dirs=allowed), store=None, propose=False)
    steps = 26  # 4 segments like the calibration ones, then 22 of real footage: a full window
    steady, turned = f"steady-{uuid.uuid4().hex[:6]}", f"turned-{uuid.uuid4().hex[:6]}"
    scrapes = []
    try:
        for step in range(steps):
            segment = synthetic[step] if step < 4 else real[(step - 4) % len(real)]
            for stream, path in ((steady, synthetic[-1 - step % len(synthetic)]), (turned, segment)):
                endpoint.invoke(InvocationRequest(uri=str(path), stream_id=stream, sequence=step))
            scrapes.append(scrape(model, (steady, turned)))
    finally:
        endpoint.close()

    evidence = {s: scrapes[-1][f'clipwatch_stream_evidence_median{{model="{model}",stream="{s}"}}']
                for s in (steady, turned)}
    assert evidence[turned] < evidence[steady]
    # the scraped series, one sample a minute, as promtool's input
    series = sorted({k for s in scrapes for k in s})
    input_series = [{"series": k, "values": " ".join(str(s.get(k, "_")) for s in scrapes)} for k in series]
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")  # promtool compares annotations too; the exprs are under test
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": input_series, "alert_rule_test": [
            {"eval_time": f"{steps - 1}m", "alertname": "ClipwatchStreamWeakEvidence", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "stream": turned, "model": model}}]},
            *({"eval_time": "5m", "alertname": name, "exp_alerts": []} for name in (
                "ClipwatchStreamNovel", "ClipwatchStreamWeakEvidence", "ClipwatchStreamConfidenceDrop",
                "ClipwatchStreamReviewRateHigh"))]}]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    run = subprocess.run([promtool(), "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, f"{run.stdout}{run.stderr}\nevidence {evidence}, series:\n" + "\n".join(
        f"{s['series']}: {s['values']}" for s in input_series)
