"""The main job on embedded defaults, at the endpoint stage: segments are uploaded to a local
S3 (moto on loopback), each upload's bucket notification lands in SQS, the Lambda handler
invokes the endpoint through boto3's sagemaker-runtime client, and the prediction is stored
in SQLite. A live terminal table shows each segment as it is classified.

Until the training issue's demo model exists, the network is the real I3D-ResNet50 with
random weights: the pipeline, timings and storage are real, the labels are not meaningful.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

DEMO_CLASSES = ["moving_left", "moving_right", "bouncing", "rotating", "zooming_in",
                "flickering_light", "static_scene"]
PATTERNS = ["testsrc2", "mandelbrot", "life", "cellauto", "rgbtestsrc", "smptehdbars"]


def prepare_model(cache: Path, console: Console) -> Path:
    from .model import InputSpec, ModelCard, build_i3d, save_model_dir

    out = cache / "demo-model-untrained"
    if not (out / "model.json").is_file():
        with console.status("building the I3D-ResNet50 model directory (random weights)…"):
            save_model_dir(build_i3d(len(DEMO_CLASSES), InputSpec()), out, DEMO_CLASSES,
                           ModelCard(version="i3d-r50-untrained", notes="random weights: demo of the pipeline only"))
    return out


def prepare_segments(cache: Path, count: int, console: Console) -> list[Path]:
    from clipwatch.testmedia import render_segment

    paths = []
    with console.status("rendering 10 s 1280×720 H.264 segments with ffmpeg…"):
        for i in range(count):
            p = cache / "segments" / f"demo_{i + 1:05d}.ts"
            if not p.is_file():
                render_segment(p, seed=i, pattern=PATTERNS[i % len(PATTERNS)])
            paths.append(p)
    return paths


def deliver(sqs, queue: str) -> dict:
    """What the SQS event source mapping does: receive a batch, call the Lambda handler, delete
    the messages that did not fail."""
    from . import lambda_handler

    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                   WaitTimeSeconds=1).get("Messages", [])
    if not messages:
        return {"invoked": 0, "batchItemFailures": []}
    event = {"Records": [{"eventSource": "aws:sqs", "messageId": m["MessageId"], "body": m["Body"]}
                         for m in messages]}
    result = lambda_handler.handler(event)
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    done = [m for m in messages if m["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
    return result


def row_table(rows: list[dict]) -> Table:
    t = Table(title="clipwatch: segments classified (Lambda → endpoint → store)")
    for col in ("segment", "activity", "confidence", "review", "decode ms", "model ms", "upload→stored ms"):
        t.add_column(col, justify="right" if "ms" in col or col == "confidence" else "left")
    for r in rows:
        t.add_row(r["segment"], r["label"], f"{r['confidence']:.2f}", "yes" if r["review"] else "",
                  f"{r['decode']:.0f}", f"{r['model']:.0f}", f"{r['total']:.0f}")
    return t


def run(out_dir: Path = Path("demo-output"), cache: Path = Path(".cache"), segments: int = 6,
        keep_serving: bool = False) -> dict:
    import mxnet  # noqa: F401  -- before decord (see decode.py)
    import boto3

    from clipwatch.config import Settings
    from clipwatch.localstack import LocalAws

    from . import lambda_handler
    from .model import load_classifier
    from .predictor import Endpoint
    from .server import BackgroundServer, create_app

    console = Console()
    out_dir.mkdir(parents=True, exist_ok=True)
    model_dir = prepare_model(cache, console)
    paths = prepare_segments(cache, segments, console)

    aws = LocalAws().start()
    aws.use()
    bucket = "clipwatch-demo"
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket=bucket)
    queue = sqs.create_queue(QueueName="clipwatch-segments")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})

    db = out_dir / "clipwatch.db"
    settings = Settings(store_url=f"sqlite:///{db}", allowed_buckets=(bucket,))
    with console.status("loading the model…"):
        classifier = load_classifier(model_dir)
        classifier.warm_up()
    endpoint = Endpoint.from_settings(classifier, settings)
    stream = f"demo-{uuid.uuid4().hex[:6]}"
    rows: list[dict] = []
    with BackgroundServer(create_app(endpoint), port=0) as server:
        lambda_handler.os.environ.update(ENDPOINT_NAME="clipwatch", SAGEMAKER_RUNTIME_ENDPOINT_URL=server.url)
        console.print(f"endpoint {server.url} (device {classifier.device}); metrics at {server.url}/metrics")
        with Live(row_table(rows), console=console, refresh_per_second=4) as live:
            for path in paths:
                s3.upload_file(str(path), bucket, f"{stream}/{path.name}")  # the encoder's upload
                result = {"invoked": 0, "batchItemFailures": []}
                started = time.perf_counter()
                while not result["invoked"] and not result["batchItemFailures"]:
                    result = deliver(sqs, queue)  # the first message may be s3:TestEvent
                if result["batchItemFailures"]:
                    console.print(f"[red]segment {path.name} failed: {result}")
                    continue
                seq = int(path.stem.split("_")[-1])
                p = endpoint.store.get_prediction(f"s3://{bucket}/{stream}", seq)
                rows.append({"segment": path.name, "label": p.label, "confidence": p.confidence,
                             "review": p.review.needs_review, **p.timings_ms,
                             "total": (time.perf_counter() - started) * 1000.0})
                live.update(row_table(rows))
        totals = [r["total"] for r in rows]
        summary = {
            "segments": len(rows), "model": classifier.card.version, "device": classifier.device,
            "upload_to_stored_ms": {"p50": statistics.median(totals) if totals else None,
                           "max": max(totals) if totals else None},
            "review_rate": sum(r["review"] for r in rows) / len(rows) if rows else None,
            "review_tasks_pending": len(endpoint.store.review_tasks()),
            "store": str(db), "note": "random-weight model: labels are not meaningful yet",
        }
        (out_dir / "summary.json").write_text(json.dumps({"summary": summary, "segments": rows}, indent=2))
        console.print_json(json.dumps(summary))
        if keep_serving:
            console.print(f"serving on {server.url}; Ctrl-C to stop")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    aws.stop()
    return summary
