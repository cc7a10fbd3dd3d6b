"""Overload is explicit: past its queue the endpoint answers 429 with Retry-After at once (the
SageMaker Runtime route: a ThrottlingException boto3 retries), counts it, and recovers; a
worker waits as asked and never dead-letters a segment because the endpoint was busy."""

from __future__ import annotations

import threading

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from prometheus_client import REGISTRY

from clipwatch.blobs import SegmentReader
from clipwatch.review_policy import ReviewPolicy
from clipwatch.store import open_store
from inference.predictor import Endpoint
from inference.server import BackgroundServer, create_app
from streaming.bus import InProcessBus
from streaming.clients import HttpClient
from streaming.events import SegmentEvent, Topics
from streaming.worker import Backoff, Worker

from deadline import joined, set_within, wait_until

TOPICS = Topics.with_prefix("overload")


@pytest.fixture
def gated(demo_classifier, small_segments, tmp_path):
    """The endpoint served with a queue of one, whose invocations wait for ``gate``."""
    endpoint = Endpoint(demo_classifier, SegmentReader(allowed_dirs=[small_segments["dir"]]),
                        open_store(f"sqlite:///{tmp_path / 'p.db'}"), ReviewPolicy())
    gate, entered = threading.Event(), threading.Event()
    real = endpoint.invoke

    def invoke(request):
        entered.set()
        set_within(gate, "the test to open the gate")
        return real(request)

    endpoint.invoke = invoke
    with BackgroundServer(create_app(endpoint, max_queue=1)) as server:
        yield {"url": server.url, "gate": gate, "entered": entered, "store": endpoint.store,
               "segment": str(small_segments["seg0"])}
    gate.set()


def overloaded_count() -> float:
    return REGISTRY.get_sample_value("clipwatch_endpoint_invocations_total", {"outcome": "overloaded"}) or 0.0


def hold_the_queue(gated) -> threading.Thread:
    holder = threading.Thread(target=lambda: httpx.post(f"{gated['url']}/invocations", timeout=120,
                                                        json={"uri": gated["segment"], "sequence": 1}))
    holder.start()
    set_within(gated["entered"], "the first invocation to hold the queue")
    return holder


def test_past_its_queue_the_endpoint_answers_429_with_retry_after_and_recovers(gated, aws):
    holder = hold_the_queue(gated)
    before = overloaded_count()
    r = httpx.post(f"{gated['url']}/invocations", json={"uri": gated["segment"], "sequence": 2}, timeout=30)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "overloaded" and "retry after" in r.json()["error"]["message"]
    assert overloaded_count() - before == 1
    # Through boto3's own client: SageMaker's throttling error, which its retry modes retry.
    runtime = boto3.client("sagemaker-runtime", endpoint_url=gated["url"], region_name="us-east-1",
                           config=Config(retries={"mode": "standard", "max_attempts": 3}))
    with pytest.raises(ClientError) as raised:
        runtime.invoke_endpoint(EndpointName="e", ContentType="application/json",
                                Body='{"uri": "%s", "sequence": 3}' % gated["segment"])
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    assert raised.value.response["ResponseMetadata"]["RetryAttempts"] >= 2  # boto3 did retry it
    gated["gate"].set()
    joined(holder, "the first invocation")
    r = httpx.post(f"{gated['url']}/invocations", json={"uri": gated["segment"], "sequence": 2}, timeout=60)
    assert r.status_code == 200  # the slot came back: nothing stays counted in flight


def test_a_worker_waits_out_an_overloaded_endpoint_and_dead_letters_nothing(gated):
    holder = hold_the_queue(gated)
    bus = InProcessBus()
    bus.publish(TOPICS.segments, "cam", SegmentEvent(stream_id="cam", sequence=7, uri=gated["segment"],
                                                     source_uri=gated["segment"], ready_at=0.0)
                .model_dump_json().encode())
    throttled = REGISTRY.get_sample_value("clipwatch_stream_segments_total", {"outcome": "throttled"}) or 0.0
    # One attempt only: a busy endpoint must not spend it.
    worker = Worker(bus, HttpClient(gated["url"]), TOPICS, max_attempts=1, backoff=Backoff(0.05, 0.2))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: (REGISTRY.get_sample_value("clipwatch_stream_segments_total", {"outcome": "throttled"})
                            or 0.0) - throttled >= 2, "the worker to be told twice to come back")
        gated["gate"].set()
        wait_until(lambda: gated["store"].get_prediction("cam", 7) is not None, "the segment's prediction")
    finally:
        stop.set()
        gated["gate"].set()
        joined(thread, "the worker")
        joined(holder, "the first invocation")
    assert bus.messages(TOPICS.dead_letter) == []
