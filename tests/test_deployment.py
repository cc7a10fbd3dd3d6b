"""Deployments and promotions without a restart: ``current`` moves atomically, the endpoint
(in process and over HTTP) switches, in-flight invocations finish on the model they started
with, and a broken promotion leaves the old model serving."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from deadline import wait_until
from inference.deployment import DeploymentError, current, history, promote


def _version(model_dir: Path, tmp_path: Path, version: str) -> Path:
    """A copy of ``model_dir`` under another version name."""
    out = tmp_path / version
    shutil.copytree(model_dir, out)
    card = json.loads((out / "model.json").read_text())
    card["version"] = version
    (out / "model.json").write_text(json.dumps(card))
    return out


def test_promote_swaps_current_keeps_versions_and_rolls_back(tiny_model_dir, tmp_path):
    deploy = tmp_path / "deploy"
    v1 = promote(_version(tiny_model_dir, tmp_path, "v1"), deploy, {"by": "test"})
    assert current(deploy) == v1.resolve() and (deploy / "current").is_symlink()
    assert not Path.readlink(deploy / "current").is_absolute()  # the folder can move as a whole
    v2 = promote(_version(tiny_model_dir, tmp_path, "v2"), deploy)
    assert current(deploy) == v2.resolve()
    promote(v1, deploy)  # roll back: the version is there, nothing is copied
    assert current(deploy) == v1.resolve()
    assert [h["version"] for h in history(deploy)] == ["v1", "v2", "v1"]
    assert history(deploy)[1]["previous"] == "v1" and history(deploy)[0]["by"] == "test"
    assert not list(deploy.glob(".*"))  # no staging folder or link left behind


def test_a_promotion_that_cannot_happen_says_why_and_changes_nothing(tiny_model_dir, tmp_path):
    deploy = tmp_path / "deploy"
    promote(_version(tiny_model_dir, tmp_path, "v1"), deploy)
    other = _version(tiny_model_dir, tmp_path / "other", "v1")
    (other / "model-0000.params").write_bytes(b"different weights")
    with pytest.raises(DeploymentError, match="different model called 'v1'"):
        promote(other, deploy)
    with pytest.raises(DeploymentError, match="not a model directory"):
        promote(tmp_path, deploy)
    assert current(deploy).name == "v1" and len(history(deploy)) == 1
    out = subprocess.run([sys.executable, "-m", "clipwatch.cli", "deploy", str(tmp_path / "nothing"),
                          "--to", str(deploy)], capture_output=True, text=True)
    assert out.returncode == 2 and "not a model directory" in out.stderr


class GatedClassifier:
    """A classifier whose forwards wait for ``gate``: an invocation in flight, held there."""

    def __init__(self, inner, gate: threading.Event):
        self.inner, self.gate = inner, gate

    def infer(self, batch):
        self.gate.wait(30)
        return self.inner.infer(batch)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_the_endpoint_swaps_models_and_in_flight_invocations_finish_on_the_old(
        tiny_model_dir, small_segments, tmp_path):
    from clipwatch.blobs import SegmentReader
    from clipwatch.records import InvocationRequest
    from clipwatch.store.sqlite import SqliteStore
    from inference.model import load_classifier
    from inference.predictor import Endpoint

    deploy = tmp_path / "deploy"
    promote(_version(tiny_model_dir, tmp_path, "v1"), deploy)
    gate = threading.Event()
    endpoint = Endpoint(GatedClassifier(load_classifier(deploy), gate),
                        SegmentReader(allowed_dirs=(small_segments["dir"],)),
                        SqliteStore(tmp_path / "preds.db"), propose=False)
    endpoint.follow(deploy, load_classifier, interval=3600)  # polled by hand: check()
    first = endpoint.active

    def request(n):
        return InvocationRequest(uri=str(small_segments["seg0"]), stream_id="cam", sequence=n)

    in_flight: dict = {}
    worker = threading.Thread(target=lambda: in_flight.update(p=endpoint.invoke(request(1))))
    worker.start()
    try:
        wait_until(lambda: first._users == 1, "the first invocation to be in flight")
        assert endpoint.watcher.check() is False  # nothing promoted yet
        promote(_version(tiny_model_dir, tmp_path, "v2"), deploy)
        assert endpoint.watcher.check() is True
        assert endpoint.invoke(request(2)).model_version == "v2"  # new work: the new model
        assert not first.model._closed  # still busy with the held invocation
    finally:
        gate.set()
        worker.join(30)
    assert in_flight["p"].model_version == "v1"  # finished on the model it started with
    assert first.model._closed  # closed once its last invocation let go
    endpoint.close()


def test_a_promoted_model_that_does_not_load_leaves_the_old_one_serving(tiny_model_dir, tmp_path, caplog):
    from clipwatch.blobs import SegmentReader
    from inference.model import load_classifier
    from inference.predictor import Endpoint

    deploy = tmp_path / "deploy"
    promote(_version(tiny_model_dir, tmp_path, "v1"), deploy)
    endpoint = Endpoint(load_classifier(deploy), SegmentReader(), None, propose=False)
    endpoint.follow(deploy, load_classifier, interval=3600)
    broken = _version(tiny_model_dir, tmp_path, "v2")
    (broken / "model-0000.params").write_bytes(b"not parameters")
    promote(broken, deploy)
    assert endpoint.watcher.check() is False
    assert endpoint.classifier.card.version == "v1"
    assert "still serving the previous model" in caplog.text
    assert endpoint.watcher.check() is False  # tried once, not reloaded in a loop
    endpoint.close()


def test_clipwatch_serve_follows_a_deployment_over_http(tiny_model_dir, small_segments, tmp_path):
    from clipwatch.config import Settings
    from inference.server import BackgroundServer, build_app

    deploy = tmp_path / "deploy"
    promote(_version(tiny_model_dir, tmp_path, "v1"), deploy)
    settings = Settings.from_env({"CLIPWATCH_STORE": f"sqlite:///{tmp_path / 'preds.db'}",
                                  "CLIPWATCH_ALLOWED_DIRS": str(small_segments["dir"])})
    app = build_app(str(deploy), settings, decode_workers=0, propose=False)
    body = {"uri": str(small_segments["seg1"]), "stream_id": "cam", "sequence": 1}
    with BackgroundServer(app) as server:
        ping = httpx.get(f"{server.url}/ping").json()
        assert ping["model_version"] == "v1" and ping["deployment"] == str(deploy)
        assert httpx.post(f"{server.url}/invocations", json=body, timeout=60).json()["model_version"] == "v1"
        promote(_version(tiny_model_dir, tmp_path, "v2"), deploy)
        wait_until(lambda: httpx.get(f"{server.url}/ping").json()["model_version"] == "v2",
                   "the server to serve the promoted model")
        body["sequence"] = 2
        assert httpx.post(f"{server.url}/invocations", json=body, timeout=60).json()["model_version"] == "v2"
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'clipwatch_model_info{' in metrics and 'version="v2"' in metrics
        assert "clipwatch_model_swaps_total" in metrics


def test_a_worker_given_a_deployment_follows_it(tiny_model_dir, small_segments, tmp_path):
    """`clipwatch worker --model DEPLOY` / `watch --model DEPLOY`: the in-process client."""
    from clipwatch.config import Settings
    from clipwatch.records import InvocationRequest
    from streaming.clients import client_for

    deploy = tmp_path / "deploy"
    promote(_version(tiny_model_dir, tmp_path, "v1"), deploy)
    client = client_for(model=str(deploy), settings=Settings.from_env(
        {"CLIPWATCH_STORE": f"sqlite:///{tmp_path / 'preds.db'}",
         "CLIPWATCH_ALLOWED_DIRS": str(small_segments["dir"])}))
    request = InvocationRequest(uri=str(small_segments["seg2"]), stream_id="cam", sequence=1)
    try:
        assert client.invoke(request).model_version == "v1"
        promote(_version(tiny_model_dir, tmp_path, "v2"), deploy)
        wait_until(lambda: client.endpoint.classifier.card.version == "v2", "the worker to switch")
        assert client.invoke(request).model_version == "v2"  # the same segment, the new model
    finally:
        client.endpoint.close()


def test_swaps_under_concurrent_load_lose_no_invocation(tiny_model_dir, small_segments, tmp_path):
    """Invocations from four threads while the model is swapped back and forth: every one
    answers, from a model that was serving when it started, and every replaced model closes."""
    from concurrent.futures import ThreadPoolExecutor

    from clipwatch.blobs import SegmentReader
    from clipwatch.records import InvocationRequest
    from inference.model import load_classifier
    from inference.predictor import Endpoint

    models = {v: load_classifier(_version(tiny_model_dir, tmp_path, v)) for v in ("v1", "v2")}
    endpoint = Endpoint(models["v1"], SegmentReader(allowed_dirs=(small_segments["dir"],)), None,
                        propose=False)
    replaced = []
    stop = threading.Event()

    def swapper():
        for i in range(6):
            replaced.append(endpoint.active)
            endpoint.swap(models["v2" if i % 2 == 0 else "v1"])
        stop.set()

    def client(n):
        versions = []
        while not stop.is_set() or len(versions) < 3:
            request = InvocationRequest(uri=str(small_segments[f"seg{n % 3}"]), stream_id=f"cam{n}",
                                        sequence=len(versions))
            versions.append(endpoint.invoke(request).model_version)
        return versions

    with ThreadPoolExecutor(5) as pool:
        clients = [pool.submit(client, n) for n in range(4)]
        pool.submit(swapper).result(timeout=300)
        answers = [v for c in clients for v in c.result(timeout=300)]
    assert set(answers) <= {"v1", "v2"} and len(answers) >= 12
    assert all(m.model._closed for m in replaced)  # each replaced model closed once idle
    endpoint.close()


def test_a_promotion_between_loading_and_following_is_not_missed(tiny_model_dir, tmp_path):
    """The watcher starts from the model the endpoint loaded, not from what `current` says
    when it starts: a promotion in between is still picked up."""
    from clipwatch.blobs import SegmentReader
    from inference.model import load_classifier
    from inference.predictor import Endpoint

    deploy = tmp_path / "deploy"
    promote(_version(tiny_model_dir, tmp_path, "v1"), deploy)
    endpoint = Endpoint(load_classifier(deploy), SegmentReader(), None, propose=False)
    promote(_version(tiny_model_dir, tmp_path, "v2"), deploy)  # while the endpoint was warming up
    endpoint.follow(deploy, load_classifier, interval=3600)
    assert endpoint.watcher.check() is True and endpoint.classifier.card.version == "v2"
    endpoint.close()
