"""The Kafka bus against a real Kafka-protocol broker (tansu) on loopback: keyed order and
consumer groups, the S3-event bridge (moto's SQS), and the whole distributed path in real
processes — ffmpeg's HLS muxer, `clipwatch watch`, `clipwatch worker` ×2 — with a worker
SIGKILLed mid-stream."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clipwatch.records import Prediction
from streaming.events import DeadLetter, SegmentEvent, Topics
from streaming.kafka_bus import KafkaBus

from deadline import exited, joined, wait_until

ROOT = Path(__file__).resolve().parents[1]


def read_topic(bus_url: str, topic: str) -> list:
    """Every record on ``topic`` (counted by reading, not from end offsets: see NOTES.md)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bus_url.removeprefix("kafka://"),
                             auto_offset_reset="earliest", consumer_timeout_ms=3000,
                             metadata_max_age_ms=1000)
    records = list(consumer)
    consumer.close()
    return records


def test_a_group_shares_the_partitions_and_each_stream_stays_in_order(tansu):
    topics = Topics.with_prefix("order")
    bus = KafkaBus(tansu.url)
    bus.ensure_topics(topics.all(), partitions=4)
    sent = [(f"cam{s}", n) for n in range(5) for s in range(4)]
    for stream, n in sent:
        bus.publish(topics.segments, stream, json.dumps([stream, n]).encode())
    got: list[tuple[int, str, int]] = []
    lock = threading.Lock()

    def member(name: int) -> None:
        sub = bus.subscribe([topics.segments], "order-group")
        deadline = time.monotonic() + 120  # a lost message ends the loop; the assertions name it
        while len(got) < len(sent) and time.monotonic() < deadline:
            for m in sub.poll(0.2):
                with lock:
                    got.append((name, *json.loads(m.value)))
                sub.commit(m)
        sub.close()

    members = [threading.Thread(target=member, args=(i,)) for i in range(2)]
    for t in members:
        t.start()
    for t in members:
        joined(t, "a group member")
    assert sorted((s, n) for _, s, n in got) == sorted(sent)  # each exactly once
    for stream in {s for s, _ in sent}:
        assert [n for _, s, n in got if s == stream] == list(range(5))  # in order
        assert len({who for who, s, _ in got if s == stream}) == 1  # one member per stream
    bus.close()


def test_s3_events_are_bridged_onto_the_segments_topic(tansu, aws):
    import boto3

    from streaming.bridge import S3EventBridge

    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket="bridge-live")
    queue = sqs.create_queue(QueueName="bridge-segments")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket="bridge-live", NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    for key in ("cam1/channel_00041.ts", "cam1/live.m3u8", "cam1/channel_00042.ts"):
        s3.put_object(Bucket="bridge-live", Key=key, Body=b"x")
    sqs.send_message(QueueUrl=queue, MessageBody="this is not an S3 event")
    topics = Topics.with_prefix("bridge")
    bus = KafkaBus(tansu.url)
    bus.ensure_topics(topics.all(), partitions=1)
    bridge = S3EventBridge(queue, bus, topics, sqs=sqs)

    def drained() -> bool:
        return not bridge.pump(wait_s=1) and sqs.get_queue_attributes(
            QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"] == "0"

    wait_until(drained, "the bridge to empty its SQS queue", interval_s=0)  # pump() long-polls 1 s
    events = [SegmentEvent.model_validate_json(r.value) for r in read_topic(tansu.url, topics.segments)]
    assert [(e.stream_id, e.sequence, e.uri) for e in events] == [
        ("s3://bridge-live/cam1", 41, "s3://bridge-live/cam1/channel_00041.ts"),
        ("s3://bridge-live/cam1", 42, "s3://bridge-live/cam1/channel_00042.ts")]
    assert all(abs(e.ready_at - time.time()) < 3600 for e in events)
    [letter] = [DeadLetter.model_validate_json(r.value) for r in read_topic(tansu.url, topics.dead_letter)]
    assert letter.error_code == "invalid_event" and letter.raw == "this is not an S3 event"
    bus.close()


def _clipwatch(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "clipwatch.cli", *args], cwd=cwd,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _predicted(log: Path) -> int:
    return log.read_text(errors="replace").count(" predicted ") if log.exists() else 0


@pytest.fixture
def endpoint_server(demo_classifier, tmp_path):
    """Our endpoint (the demo model, SQLite store) over HTTP, reading the follower's spool."""
    from clipwatch.blobs import SegmentReader
    from clipwatch.review_policy import ReviewPolicy
    from clipwatch.store import open_store
    from inference.predictor import Endpoint
    from inference.server import BackgroundServer, create_app

    spool = tmp_path / "spool"
    store = open_store(f"sqlite:///{tmp_path / 'preds.db'}")
    endpoint = Endpoint(demo_classifier, SegmentReader(allowed_dirs=[spool]), store, ReviewPolicy())
    with BackgroundServer(create_app(endpoint)) as server:
        yield server.url, spool, store


def test_a_worker_killed_mid_stream_loses_nothing_and_stores_each_segment_once(tansu, endpoint_server, tmp_path):
    """ffmpeg's own HLS muxer writes a live stream in real time (a sliding window that deletes
    old segments); `clipwatch watch` follows it onto Kafka; two `clipwatch worker` processes
    share the group and call our endpoint over HTTP. The busy worker is SIGKILLed mid-stream
    and a third joins: every segment must end with exactly one stored prediction."""
    from clipwatch.testmedia import ffmpeg
    from streaming.state import StateStore

    url, spool, store = endpoint_server
    hls = tmp_path / "hls"
    hls.mkdir()
    worker_args = ["worker", "--bus", tansu.url, "--endpoint-url", url, "--topic-prefix", "live"]
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [_clipwatch(worker_args, logs[i], tmp_path) for i in range(2)]
    watch = _clipwatch(["watch", str(hls / "live.m3u8"), "--bus", tansu.url, "--topic-prefix", "live",
                        "--stream-id", "live", "--spool", str(spool), "--state", str(tmp_path / "state.db"),
                        "--wait"], tmp_path / "watch.log", tmp_path)
    ready = [*logs[:2], tmp_path / "watch.log"]

    def all_running() -> None:
        assert all(p.poll() is None for p in (*workers, watch)), [l.read_text()[-2000:] for l in ready]

    try:
        wait_until(lambda: all(log.exists() and ("joined group" in log.read_text() or "following" in log.read_text())
                               for log in ready),  # MXNet imports and the model loads before the stream starts
                   "the workers to join the group and `clipwatch watch` to follow", timeout_s=600,
                   interval_s=0.1, alive=all_running)
    except AssertionError:
        for p in (*workers, watch):
            p.kill()
            p.wait(timeout=60)
        raise
    seconds, segment = 20, 2
    encoder = subprocess.Popen(
        [ffmpeg(), "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-f", "hls", "-hls_time", str(segment),
         "-hls_list_size", "3", "-hls_flags", "delete_segments", "-hls_segment_filename",
         str(hls / "seg_%05d.ts"), str(hls / "live.m3u8")], stderr=subprocess.PIPE)

    def streaming() -> None:
        assert encoder.poll() is None, "the stream ended before a worker got going"
        assert all(w.poll() is None for w in workers), logs[0].read_text()[-3000:]

    def a_worker_runs() -> None:
        assert any(w.poll() is None for w in workers), [l.read_text()[-2000:] for l in logs]

    try:
        wait_until(lambda: any(_predicted(log) >= 2 for log in logs[:2]),  # the busy worker is mid-stream
                   "a worker's second prediction", timeout_s=600, interval_s=0.1, alive=streaming)
        busy = next(i for i in range(2) if _predicted(logs[i]) >= 2)
        workers[busy].send_signal(signal.SIGKILL)
        exited(workers[busy], "the SIGKILLed worker", timeout_s=60)
        killed_after = _predicted(logs[busy])
        assert encoder.poll() is None  # killed mid-stream
        workers.append(_clipwatch(worker_args, logs[2], tmp_path))
        assert exited(encoder, "ffmpeg's live stream", timeout_s=600) == 0, encoder.stderr.read().decode()
        assert exited(watch, "`clipwatch watch` at ENDLIST", timeout_s=600) == 0, (
            (tmp_path / "watch.log").read_text()[-3000:])
        segments = StateStore(tmp_path / "state.db").load("live").last_sequence + 1
        assert segments >= seconds // segment - 1
        wait_until(lambda: len(store.timeline("live")) >= segments, f"all {segments} segments stored",
                   timeout_s=600, interval_s=0.2, alive=a_worker_runs)
        for i, w in enumerate(workers):
            if i != busy:
                w.send_signal(signal.SIGTERM)  # finish, commit, leave the group
                assert exited(w, f"worker {i} after SIGTERM") == 0, logs[i].read_text()[-2000:]
                assert "left group" in logs[i].read_text()
    finally:
        for p in (*workers, encoder, watch):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=60)
    assert [p.sequence for p in store.timeline("live")] == list(range(segments))
    predictions = [Prediction.model_validate_json(r.value) for r in read_topic(tansu.url, "live.predictions")]
    stored = sorted(p.sequence for p in predictions if p.stored)
    assert stored == list(range(segments))  # each segment written exactly once
    assert read_topic(tansu.url, "live.dead-letter") == []
    watch_log = (tmp_path / "watch.log").read_text()
    assert "left the playlist window" not in watch_log and "giving up" not in watch_log
    assert killed_after < segments  # the others really took over
    assert sum(_predicted(log) for log in logs) >= segments


def test_workers_ride_out_a_broker_restart_and_lose_nothing(aws, demo_classifier, small_segments, tmp_path):
    """tansu keeps its log in S3 (moto) here, so it can stop and come back on the same port, as
    a Kafka broker does: the producer and the worker's consumer reconnect by themselves."""
    import boto3

    from clipwatch.blobs import SegmentReader
    from clipwatch.localstack import free_port
    from clipwatch.review_policy import ReviewPolicy
    from clipwatch.store import open_store
    from inference.predictor import Endpoint
    from streaming.clients import InProcessClient
    from streaming.tansu import Tansu
    from streaming.worker import Worker

    boto3.client("s3").create_bucket(Bucket="tansu-restart")
    broker = Tansu(free_port(), storage="s3://tansu-restart/", log_file=tmp_path / "tansu.log",
                   env={"AWS_ENDPOINT": aws.url, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"})
    broker.start()
    topics = Topics.with_prefix("restart")
    store = open_store(f"sqlite:///{tmp_path / 'preds.db'}")
    endpoint = Endpoint(demo_classifier, SegmentReader(allowed_dirs=[small_segments["dir"]]), store,
                        ReviewPolicy())
    bus = KafkaBus(broker.url)
    bus.ensure_topics(topics.all(), partitions=1)
    worker = Worker(bus, InProcessClient(endpoint), topics)
    thread = threading.Thread(target=worker.run)
    thread.start()

    def send(sequence: int) -> None:
        path = small_segments[f"seg{sequence % 3}"]
        bus.publish(topics.segments, "cam", SegmentEvent(
            stream_id="cam", sequence=sequence, uri=str(path), source_uri=str(path),
            ready_at=time.time()).model_dump_json().encode())

    def worker_alive() -> None:
        assert thread.is_alive()

    try:
        for n in range(2):
            send(n)
        wait_until(lambda: len(store.timeline("cam")) >= 2, "the first two segments stored",
                   interval_s=0.1, alive=worker_alive)
        broker.stop()
        # daemon: a producer stuck in its retries must not keep pytest from exiting
        late = threading.Thread(target=lambda: [send(n) for n in (2, 3)], daemon=True)
        late.start()  # blocks in the producer's retries while the broker is away
        time.sleep(2)
        broker.start()
        joined(late, "the producer's retries across the restart")
        wait_until(lambda: len(store.timeline("cam")) >= 4, "all four segments stored",
                   interval_s=0.1, alive=worker_alive)
    finally:
        worker.stop.set()
        joined(thread, "the worker after stop")
        bus.close()
    try:
        predictions = [Prediction.model_validate_json(r.value) for r in read_topic(broker.url, topics.predictions)]
    finally:
        broker.stop()
    assert [p.sequence for p in store.timeline("cam")] == [0, 1, 2, 3]
    assert sorted(p.sequence for p in predictions if p.stored) == [0, 1, 2, 3]
