"""The fast path learnt while serving (inference.auto_int8), on the demo model and real H.264: the
endpoint moves to OpenVINO only after it agreed with torch on served clips and was faster, and
remembers it; it switches to int8 only after int8 agreed with what it served on the clips it
checked; a check that fails and a calibration that fails never switch and are not retried beyond
the flag; the outcome is cached by the weights, a corrupt cached module rebuilt; /ping and the
metrics say which precision serves and why."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import numpy as np
import pytest

from clipwatch.blobs import SegmentReader
from clipwatch.config import AutoInt8Settings, Settings
from clipwatch.records import InvocationRequest
from clipwatch.review_policy import ReviewPolicy
from clipwatch.store import open_store
from deadline import wait_until
from inference.model import Classifier, load_classifier
from inference.predictor import Endpoint
from training.synth import write_activity_segment

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"
# speed is the benchmark's; the runtime choice has its own test
QUICK = dict(calibration_clips=16, check_clips=12, min_speedup=0.0, runtime_clips=0)


@pytest.fixture(scope="module")
def segments(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("int8-media")
    kinds = ["moving_left", "moving_right", "bouncing", "rotating", "zooming_in", "static_scene"]
    paths = [d / f"seg_{i:05d}.ts" for i in range(36)]  # distinct clips: a replayed one counts once
    for i, path in enumerate(paths):
        write_activity_segment(path, [(kinds[i % len(kinds)], 3.0)], seed=40 + i, size=(320, 180))
    return paths


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CLIPWATCH_INT8_CACHE", str(tmp_path / "int8"))
    return tmp_path / "int8"


def endpoint_for(segments, tmp_path, classifier: Classifier | None = None, **settings) -> Endpoint:
    return Endpoint(classifier or load_classifier(DEMO), SegmentReader(allowed_dirs=[segments[0].parent]),
                    open_store(f"sqlite:///{tmp_path}/preds.db"), ReviewPolicy(sample_fraction=0.0),
                    propose=False, auto_int8=AutoInt8Settings(**{**QUICK, **settings}))


def serve_until_settled(endpoint: Endpoint, segments: list[Path], limit: int = 400) -> list[tuple]:
    """Invoke the segments in turn until the learner is done: (state before, backend, label)
    per invocation."""
    seen, n = [], 0
    while endpoint.active.int8.learning:
        assert n < limit, f"still {endpoint.active.int8.state} after {n} invocations"
        state = endpoint.active.int8.state
        p = endpoint.invoke(InvocationRequest(uri=str(segments[n % len(segments)]), stream_id="cam", sequence=n))
        seen.append((state, endpoint.classifier.backend, p.label))
        n += 1
    return seen


def labels_of(endpoint: Endpoint, segments: list[Path], start: int = 10_000) -> list[str]:
    return [endpoint.invoke(InvocationRequest(uri=str(s), stream_id="cam", sequence=start + i)).label
            for i, s in enumerate(segments)]


def record(cache: Path) -> dict:
    (folder,) = cache.iterdir()
    return json.loads((folder / "record.json").read_text())


def test_the_switch_comes_only_after_int8_agreed_with_what_was_served(segments, tmp_path, cache, caplog):
    endpoint = endpoint_for(segments, tmp_path)
    safe = endpoint.classifier.backend
    try:
        assert endpoint.active.precision["auto_int8"] == "calibrating" and safe != "torch-int8"
        served = labels_of(endpoint, segments)
        seen = serve_until_settled(endpoint, segments)
        assert endpoint.active.int8.state == "int8", endpoint.active.precision["reason"]
        # every answer before the switch came from the safe precision, in order calibrate → check
        states = [s for s, _, _ in seen]
        assert states == sorted(states, key=["calibrating", "checking"].index)
        assert all(backend == safe for _, backend, _ in seen[:-1])
        assert endpoint.classifier.backend == "torch-int8"
        kept = record(cache)
        assert kept["passed"] and kept["int8"]["checked_clips"] == 12 and kept["int8"]["agreement"] >= 0.99
        assert kept["reference"] == safe
        # the clips it checked were these segments: int8 gives the same labels
        assert labels_of(endpoint, segments, 20_000) == served
    finally:
        endpoint.close()

    # the next start serves int8 at once, from the cache keyed by the weights
    again = endpoint_for(segments, tmp_path)
    try:
        assert again.active.int8.state == "int8" and again.classifier.backend == "torch-int8"
        assert "from the cache" in again.active.precision["reason"]
    finally:
        again.close()

    # a cached module that does not load is ignored, removed and calibrated again
    (folder,) = cache.iterdir()
    (folder / "model-int8.pt").write_bytes(b"not a torch archive")
    with caplog.at_level(logging.WARNING, logger="clipwatch.int8"):
        rebuilt = endpoint_for(segments, tmp_path)
    try:
        assert "ignoring the cached int8 module" in caplog.text
        assert rebuilt.active.int8.state == "calibrating" and rebuilt.classifier.backend == safe
        serve_until_settled(rebuilt, segments)
        assert rebuilt.active.int8.state == "int8" and record(cache)["passed"]
    finally:
        rebuilt.close()


def test_a_segment_served_again_is_one_clip_of_evidence(segments, tmp_path, cache):
    endpoint = endpoint_for(segments, tmp_path)
    try:
        for n in range(12):  # a load test replaying one segment
            endpoint.invoke(InvocationRequest(uri=str(segments[0]), stream_id="cam", sequence=n))
        wait_until(lambda: endpoint.active.int8._offers.empty(), "the learner to take the offers")
        assert endpoint.active.int8.state == "calibrating"  # 16 distinct clips are needed
        assert len(endpoint.active.int8._seen) == 1
        serve_until_settled(endpoint, segments)
        assert endpoint.active.int8.state == "int8" and record(cache)["int8"]["checked_clips"] == 12
        assert len(endpoint.active.int8._seen) == 16 + 12
    finally:
        endpoint.close()


class Wrong:
    """A runtime that gets every clip wrong: its top-1 is the served one's neighbour."""

    def __init__(self, runtime):
        self.runtime, self.name, self.precision, self.device = runtime, runtime.name, runtime.precision, "cpu"

    def forward(self, batch):
        logits, features = self.runtime.forward(batch)
        return np.roll(logits, 1, axis=1), features


def test_a_failed_check_never_switches_and_is_not_retried_beyond_the_flag(segments, tmp_path, cache, monkeypatch):
    real = Classifier.runtime_like
    monkeypatch.setattr(Classifier, "runtime_like", lambda self, module: Wrong(real(self, module)))
    endpoint = endpoint_for(segments, tmp_path)
    safe = endpoint.classifier.backend
    try:
        served = labels_of(endpoint, segments)
        seen = serve_until_settled(endpoint, segments)
        assert endpoint.active.int8.state == "failed" and endpoint.classifier.backend == safe
        assert {backend for _, backend, _ in seen} <= {safe}
        assert labels_of(endpoint, segments, 20_000) == served  # the answers never changed
        reason = endpoint.active.precision["reason"]
        assert f"int8 agreed with {safe} on 0 of 1 distinct served clips" in reason and "staying on" in reason
    finally:
        endpoint.close()
    kept = record(cache)
    assert not kept["passed"] and kept["attempts"] == 1

    again = endpoint_for(segments, tmp_path)  # one attempt allowed (the default): not tried again
    try:
        assert again.active.int8.state == "failed" and again.active.int8._thread is None
        assert "not tried again (1 of CLIPWATCH_AUTO_INT8_ATTEMPTS=1" in again.active.precision["reason"]
    finally:
        again.close()
    retried = endpoint_for(segments, tmp_path, attempts=2)
    try:
        assert retried.active.int8.state == "calibrating"
        serve_until_settled(retried, segments)
        assert retried.active.int8.state == "failed" and record(cache)["attempts"] == 2
    finally:
        retried.close()


@pytest.mark.parametrize("min_speedup,openvino_wrong,chosen",
                         [(0.0, False, "openvino"), (1e6, False, "torch"), (0.0, True, "torch")])
def test_openvino_serves_only_once_it_agreed_and_was_faster_and_the_choice_is_kept(
        segments, tmp_path, cache, monkeypatch, min_speedup, openvino_wrong, chosen):
    from inference import auto_int8

    real = Classifier.runtime_like  # int8 fails its check: what is kept is the runtime choice
    monkeypatch.setattr(Classifier, "runtime_like", lambda self, module: Wrong(real(self, module)))
    if openvino_wrong:
        named = auto_int8._runtime_named
        monkeypatch.setattr(auto_int8, "_runtime_named", lambda c, name: Wrong(named(c, name)))
    plain = Endpoint(load_classifier(DEMO), SegmentReader(allowed_dirs=[segments[0].parent]), None)
    expected = labels_of(plain, segments)
    plain.close()
    endpoint = endpoint_for(segments, tmp_path, runtime_clips=3, runtime_min_speedup=min_speedup)
    safe = endpoint.classifier.backend
    then = f"{chosen}-{safe.split('-')[1]}"  # the same precision on the chosen runtime
    try:
        assert safe.startswith("torch-") and endpoint.active.int8.state == "choosing"
        seen = serve_until_settled(endpoint, segments)
        states = [s for s, _, _ in seen]
        assert states == sorted(states, key=["choosing", "calibrating", "checking"].index)
        assert states[:3] == ["choosing"] * 3
        # timed beside torch, not served (the backend is read after each answer: the last one
        # timed may already see the switch)
        assert set([b for s, b, _ in seen if s == "choosing"][:-1]) == {safe}
        assert {b for s, b, _ in seen if s != "choosing"} == {then}
        assert endpoint.active.int8.state == "failed" and endpoint.classifier.backend == then
        assert labels_of(endpoint, segments, 20_000) == expected
        choice = json.loads((cache / endpoint.active.int8.key / "runtime.json").read_text())
        agreed = 0 if openvino_wrong else 3
        assert choice["runtime"] == chosen and f"agreed with {safe} on {agreed} of 3 distinct served clips" in choice["reason"]
        assert record(cache)["reference"] == then  # int8 was checked against what served
    finally:
        endpoint.close()

    again = endpoint_for(segments, tmp_path, runtime_clips=3)  # the next start: no timing again
    try:
        assert again.classifier.backend == then and again.active.int8.state == "failed"
        assert again.active.int8._thread is None
    finally:
        again.close()


def test_a_calibration_that_fails_leaves_the_model_serving(segments, tmp_path, cache, monkeypatch, caplog):
    from inference import quantize

    def broken(model_dir, calibration, lock=None):
        next(iter(calibration))
        raise RuntimeError("could not create a primitive descriptor")

    monkeypatch.setattr(quantize, "quantize", broken)
    endpoint = endpoint_for(segments, tmp_path)
    safe = endpoint.classifier.backend
    try:
        with caplog.at_level(logging.WARNING, logger="clipwatch.int8"):
            serve_until_settled(endpoint, segments)
        assert endpoint.active.int8.state == "failed" and endpoint.classifier.backend == safe
        assert "could not create a primitive descriptor" in endpoint.active.precision["reason"]
        assert labels_of(endpoint, segments)  # still serving
        assert caplog.text.count("int8 calibration failed") == 1
    finally:
        endpoint.close()
    assert not record(cache)["passed"]


def test_it_stays_off_when_asked_or_when_the_precision_was_chosen(segments, tmp_path, cache):
    off = endpoint_for(segments, tmp_path, enabled=False)
    fp32 = endpoint_for(segments, tmp_path, classifier=load_classifier(DEMO, precision="fp32"))
    torch = endpoint_for(segments, tmp_path, classifier=load_classifier(DEMO, runtime="torch"))
    plain = Endpoint(load_classifier(DEMO), SegmentReader(allowed_dirs=[segments[0].parent]), None)
    try:
        assert off.active.int8.state == "off" and "CLIPWATCH_AUTO_INT8=off" in off.active.precision["reason"]
        for asked in (fp32, torch):
            assert asked.active.int8.state == "off" and "as asked" in asked.active.precision["reason"]
        assert plain.active.precision["auto_int8"] == "off"
        assert all(e.active.int8._thread is None for e in (off, fp32, torch))
        assert AutoInt8Settings.from_env({"CLIPWATCH_AUTO_INT8": "off"}).enabled is False
        with pytest.raises(ValueError, match="CLIPWATCH_AUTO_INT8='maybe'"):
            AutoInt8Settings.from_env({"CLIPWATCH_AUTO_INT8": "maybe"})
    finally:
        for e in (off, fp32, torch, plain):
            e.close()
    assert not cache.exists()  # nothing learnt, nothing written


def test_ping_and_metrics_say_which_precision_serves_and_why(segments, tmp_path, cache):
    from inference.server import BackgroundServer, build_app

    settings = Settings.from_env({"CLIPWATCH_STORE": f"sqlite:///{tmp_path / 'preds.db'}",
                                  "CLIPWATCH_ALLOWED_DIRS": str(segments[0].parent),
                                  "CLIPWATCH_AUTO_INT8_CALIBRATION_CLIPS": "16",
                                  "CLIPWATCH_AUTO_INT8_CHECK_CLIPS": "12",
                                  "CLIPWATCH_AUTO_INT8_MIN_SPEEDUP": "0",
                                  "CLIPWATCH_AUTO_INT8_RUNTIME_CLIPS": "2",
                                  "CLIPWATCH_AUTO_INT8_RUNTIME_MIN_SPEEDUP": "0"})
    app = build_app(str(DEMO), settings, decode_workers=0, propose=False)
    with BackgroundServer(app) as server:
        ping = httpx.get(f"{server.url}/ping").json()
        assert ping["precision"]["auto_int8"] == "choosing" and ping["precision"]["serving"] == ping["backend"]
        n = 0

        def switched() -> bool:
            nonlocal n
            body = {"uri": str(segments[n % len(segments)]), "stream_id": "cam", "sequence": n}
            n += 1
            assert httpx.post(f"{server.url}/invocations", json=body, timeout=60).status_code == 200
            return httpx.get(f"{server.url}/ping").json()["precision"]["auto_int8"] == "int8"

        wait_until(switched, "the endpoint to switch to int8")
        ping = httpx.get(f"{server.url}/ping").json()
        assert ping["backend"] == "torch-int8" and "agreed with" in ping["precision"]["reason"]
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'clipwatch_auto_int8{clipwatch_auto_int8="int8"} 1.0' in metrics
        assert 'backend="torch-int8"' in metrics
