"""Workers over the in-process bus, with the endpoint in-process, over HTTP (uvicorn) and
through boto3's sagemaker-runtime client; real H.264 segments and a real (tiny) I3D."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from clipwatch.blobs import SegmentReader
from clipwatch.records import Prediction
from clipwatch.review_policy import ReviewPolicy
from clipwatch.store import open_store
from streaming.bus import InProcessBus
from streaming.clients import HttpClient, InProcessClient, InvokeFailed, SageMakerClient
from streaming.embedded import EmbeddedPipeline
from streaming.events import DeadLetter, SegmentEvent, Topics
from streaming.follower import Follower
from streaming.sinks import DirSink
from streaming.state import StateStore
from streaming.worker import Backoff, Worker

from deadline import joined, wait_until

TOPICS = Topics.with_prefix("t")
FAST = Backoff(base_s=0.01, cap_s=0.05)


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def endpoint(demo_classifier, small_segments, tmp_path):
    from inference.predictor import Endpoint

    reader = SegmentReader(allowed_dirs=[small_segments["dir"], tmp_path])
    return Endpoint(demo_classifier, reader, open_store(f"sqlite:///{tmp_path / 'preds.db'}"),
                    ReviewPolicy(min_confidence=0.6, min_margin=0.2))


def event(uri: Path | str, sequence: int, stream: str = "cam") -> SegmentEvent:
    return SegmentEvent(stream_id=stream, sequence=sequence, uri=str(uri), source_uri=str(uri),
                        duration=10.0, ready_at=0.0)


def publish(bus, e: SegmentEvent) -> None:
    bus.publish(TOPICS.segments, e.stream_id, e.model_dump_json().encode())


def drain(bus: InProcessBus, worker: Worker) -> None:
    """Run the worker until the group has committed every segment event."""
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: bus.committed(worker.group, TOPICS.segments) >= len(bus.messages(TOPICS.segments)),
                   "the worker to commit every segment event")
    finally:
        stop.set()  # also when the wait gave up: a running worker would keep pytest from exiting
    joined(thread, "the worker after stop")


def values(bus, topic, model):
    return [model.model_validate_json(m.value) for m in bus.messages(topic)]


def test_the_embedded_pipeline_follows_a_stream_and_predicts_each_segment_once(endpoint, small_segments, tmp_path):
    hls = tmp_path / "hls"
    hls.mkdir()
    names = []
    for n, key in enumerate(("seg0", "seg1")):
        (hls / f"seg_{n:05d}.ts").write_bytes(small_segments[key].read_bytes())
        names.append(f"#EXTINF:2.0,\nseg_{n:05d}.ts")
    (hls / "live.m3u8").write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
                                   + "\n".join(names) + "\n#EXT-X-ENDLIST\n")
    bus = InProcessBus()
    follower = Follower(str(hls / "live.m3u8"), lambda e: publish(bus, e), DirSink(tmp_path / "spool"),
                        StateStore(tmp_path / "state.db"), stream_id="cam", poll_interval=0.05)
    lag = metric("clipwatch_stream_lag_seconds_count")
    pipeline = EmbeddedPipeline(follower, Worker(bus, InProcessClient(endpoint), TOPICS), bus).start()
    try:
        wait_until(pipeline.finished, "the pipeline to reach ENDLIST and handle every segment", interval_s=0.2)
    finally:
        pipeline.stop()
    assert pipeline.error is None
    stored = endpoint.store.timeline("cam")
    assert [p.sequence for p in stored] == [0, 1]
    assert all(Path(p.segment_uri).parent == tmp_path / "spool" / "cam" for p in stored)
    published = values(bus, TOPICS.predictions, Prediction)
    assert [(p.sequence, p.stored) for p in published] == [(0, True), (1, True)]
    flagged = [p.sequence for p in published if p.review.needs_review]
    assert [json.loads(m.value)["sequence"] for m in bus.messages(TOPICS.review_tasks)] == flagged
    assert bus.messages(TOPICS.dead_letter) == []
    assert metric("clipwatch_stream_lag_seconds_count") - lag == 2


def test_a_redelivered_segment_is_stored_once(endpoint, small_segments):
    bus = InProcessBus()
    for _ in range(2):  # the same event twice: what a crash before the commit leads to
        publish(bus, event(small_segments["seg0"], 7))
    duplicates = metric("clipwatch_stream_segments_total", outcome="duplicate")
    drain(bus, Worker(bus, InProcessClient(endpoint), TOPICS))
    assert [p.stored for p in values(bus, TOPICS.predictions, Prediction)] == [True, False]
    assert len(endpoint.store.timeline("cam")) == 1
    assert metric("clipwatch_stream_segments_total", outcome="duplicate") - duplicates == 1


def test_a_poison_segment_is_dead_lettered_and_the_stream_moves_on(endpoint, small_segments):
    bus = InProcessBus()
    publish(bus, event(small_segments["garbage"], 1))
    bus.publish(TOPICS.segments, "cam", b"{not json")
    publish(bus, event(small_segments["seg0"], 2))
    drain(bus, Worker(bus, InProcessClient(endpoint), TOPICS, backoff=FAST))
    letters = values(bus, TOPICS.dead_letter, DeadLetter)
    assert [(d.error_code, d.attempts) for d in letters] == [("undecodable_video", 1), ("invalid_event", 1)]
    assert letters[0].event.sequence == 1 and letters[1].raw == "{not json"
    assert [p.sequence for p in endpoint.store.timeline("cam")] == [2]
    assert bus.committed("clipwatch-workers", TOPICS.segments) == 3


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers ``status`` (500) ``failures`` times, then forwards to the real endpoint."""

    failures = 0
    status = 500
    upstream = ""
    calls = 0

    def do_POST(self):
        type(self).calls += 1
        body = self.rfile.read(int(self.headers["content-length"]))
        if type(self).calls <= type(self).failures:
            self.send_response(type(self).status)
            self.end_headers()
            self.wfile.write(b"upstream busy")
            return
        req = urllib.request.Request(self.upstream + "/invocations", body,
                                     {"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            data = resp.read()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def served(endpoint):
    from inference.server import BackgroundServer, create_app

    with BackgroundServer(create_app(endpoint)) as server:
        yield server


def flaky_server(upstream: str, failures: int, status: int = 500):
    handler = type("Flaky", (_Flaky,), {"failures": failures, "upstream": upstream, "calls": 0, "status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


def test_5xx_is_retried_with_backoff_then_dead_lettered(served, endpoint, small_segments):
    server, handler = flaky_server(served.url, failures=2)
    try:
        bus = InProcessBus()
        publish(bus, event(small_segments["seg0"], 3))
        retried = metric("clipwatch_stream_segments_total", outcome="retried")
        client = HttpClient(f"http://127.0.0.1:{server.server_address[1]}")
        drain(bus, Worker(bus, client, TOPICS, max_attempts=3, backoff=FAST))
        assert handler.calls == 3 and bus.messages(TOPICS.dead_letter) == []
        assert metric("clipwatch_stream_segments_total", outcome="retried") - retried == 2
        assert endpoint.store.get_prediction("cam", 3) is not None

        handler.calls, handler.failures = 0, 99
        publish(bus, event(small_segments["seg0"], 4))
        drain(bus, Worker(bus, client, TOPICS, max_attempts=3, backoff=FAST))
        [letter] = values(bus, TOPICS.dead_letter, DeadLetter)
        assert (letter.error_code, letter.attempts, handler.calls) == ("http_500", 3, 3)
        assert endpoint.store.get_prediction("cam", 4) is None
    finally:
        server.shutdown()
        server.server_close()


def test_an_endpoint_that_is_down_does_not_spend_a_segments_attempts(served, endpoint, small_segments):
    """503s from the proxy in front of a stopped endpoint, then refused connections: the worker
    waits for the endpoint (backoff, capped) instead of dead-lettering the segment."""
    server, handler = flaky_server(served.url, failures=4, status=503)
    try:
        bus = InProcessBus()
        publish(bus, event(small_segments["seg0"], 11))
        down = metric("clipwatch_stream_segments_total", outcome="endpoint_down")
        drain(bus, Worker(bus, HttpClient(f"http://127.0.0.1:{server.server_address[1]}"), TOPICS,
                          max_attempts=2, backoff=FAST))
        assert handler.calls == 5 and bus.messages(TOPICS.dead_letter) == []
        assert metric("clipwatch_stream_segments_total", outcome="endpoint_down") - down == 4
        assert endpoint.store.get_prediction("cam", 11) is not None
    finally:
        server.shutdown()
        server.server_close()


def test_stopping_during_a_backoff_hands_the_segment_back_uncommitted(served, small_segments):
    server, handler = flaky_server(served.url, failures=99)
    try:
        bus = InProcessBus()
        publish(bus, event(small_segments["seg0"], 5))
        worker = Worker(bus, HttpClient(f"http://127.0.0.1:{server.server_address[1]}"), TOPICS,
                        backoff=Backoff(base_s=60, cap_s=60))
        thread = threading.Thread(target=worker.run)
        thread.start()
        try:
            wait_until(lambda: handler.calls >= 1, "the worker's first call", interval_s=0.02)
        finally:
            worker.stop.set()  # what SIGTERM does
        joined(thread, "the worker after stop")
        assert bus.committed(worker.group, TOPICS.segments) == 0  # another worker will take it
        assert bus.messages(TOPICS.dead_letter) == []
        assert bus.subscribe([TOPICS.segments], worker.group).poll(0)[0].offset == 0
    finally:
        server.shutdown()
        server.server_close()


def test_the_clients_agree_and_name_what_went_wrong(served, endpoint, small_segments, aws):
    request = event(small_segments["seg1"], 11).request()
    clients = [InProcessClient(endpoint), HttpClient(served.url),
               SageMakerClient("clipwatch", endpoint_url=served.url)]
    labels = {c.invoke(request).label for c in clients}
    assert len(labels) == 1
    for client in clients:
        with pytest.raises(InvokeFailed) as err:
            client.invoke(event(small_segments["truncated"], 12).request())
        assert (err.value.code, err.value.retryable) == ("undecodable_video", False), client
        with pytest.raises(InvokeFailed) as err:
            client.invoke(event("/nonexistent/x.ts", 13).request())
        assert err.value.code == "not_allowed" and not err.value.retryable
    with pytest.raises(InvokeFailed) as err:
        HttpClient("http://127.0.0.1:9").invoke(request)
    assert err.value.code == "unreachable" and err.value.retryable
