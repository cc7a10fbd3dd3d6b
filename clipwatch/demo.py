"""The main job on embedded defaults, at the endpoint stage (``clipwatch demo``).

A synthetic live stream (training.synth: activities that change every few segments, with
ambiguous stretches and ground truth per segment) is encoded to HLS; each segment is uploaded
to a local S3 (moto on loopback) as MediaLive would, the bucket notification lands in SQS, the
Lambda handler invokes the endpoint through boto3's sagemaker-runtime client, the endpoint runs
the committed demo model (``models/demo``, i3d_tiny trained on the synthetic activities) and
stores the prediction in SQLite. A live table shows each segment against the ground truth.

Like the CLI, this module wires packages together and imports them lazily; nothing imports it.
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

DEMO_MODEL = Path(__file__).resolve().parents[1] / "models" / "demo"


def prepare_stream(cache: Path, segments: int, seed: int, console: Console) -> tuple[list[Path], dict]:
    """Render (once, then cached) a synthetic HLS stream; its segments and ground truth."""
    from training.synth import write_live_stream

    out = cache / f"live-seed{seed}-{segments}"
    truth_file = out / "ground_truth.jsonl"
    if not truth_file.is_file() or len(truth_file.read_text().splitlines()) < segments:
        with console.status(f"encoding a {segments}-segment synthetic live stream with ffmpeg…"):
            write_live_stream(out, segments, seed=seed, list_size=segments + 1, progress=False)
    truth = {t["file"]: t for t in map(json.loads, truth_file.read_text().splitlines())}
    files = [out / name for name in sorted(truth)][:segments]
    return files, truth


def deliver(sqs, queue: str) -> dict:
    """What the SQS event source mapping does: receive a batch, call the Lambda handler, delete
    the messages that did not fail."""
    from inference import lambda_handler

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
    t = Table(title="clipwatch: live segments (S3 → SQS → Lambda → endpoint → SQLite)")
    for col in ("segment", "truth", "predicted", "conf.", "review", "model ms", "upload→stored ms"):
        t.add_column(col, justify="right" if "ms" in col or col == "conf." else "left")
    for r in rows:
        mark = "[green]" if r["correct"] else "[red]"
        truth = r["truth"] + (" (ambiguous)" if r["ambiguous"] else "")
        t.add_row(r["segment"], truth, f"{mark}{r['label']}", f"{r['confidence']:.2f}",
                  "yes" if r["review"] else "", f"{r['model']:.0f}", f"{r['total']:.0f}")
    return t


def run(out_dir: Path = Path("demo-output"), cache: Path = Path(".cache"), segments: int = 8,
        seed: int = 7, keep_serving: bool = False) -> dict:
    import inference  # noqa: F401  -- sets MXNet's thread count before MXNet loads
    import mxnet  # noqa: F401  -- before decord (see inference/decode.py)
    import boto3

    from clipwatch.config import Settings
    from clipwatch.localstack import LocalAws
    from inference import lambda_handler
    from inference.model import load_classifier
    from inference.predictor import Endpoint
    from inference.server import BackgroundServer, create_app

    console = Console()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, truth = prepare_stream(cache, segments, seed, console)

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
    with console.status("loading the demo model…"):
        classifier = load_classifier(DEMO_MODEL)
        classifier.warm_up()
    endpoint = Endpoint.from_settings(classifier, settings)
    stream = f"demo-{uuid.uuid4().hex[:6]}"
    rows: list[dict] = []
    with BackgroundServer(create_app(endpoint)) as server:
        lambda_handler.os.environ.update(ENDPOINT_NAME="clipwatch", SAGEMAKER_RUNTIME_ENDPOINT_URL=server.url)
        console.print(f"endpoint {server.url} · model {classifier.card.version} on {classifier.device} · "
                      f"metrics {server.url}/metrics")
        with Live(row_table(rows), console=console, refresh_per_second=4) as live:
            for path in paths:
                started = time.perf_counter()
                s3.upload_file(str(path), bucket, f"{stream}/{path.name}")  # the encoder's upload
                result = {"invoked": 0, "batchItemFailures": []}
                while not result["invoked"] and not result["batchItemFailures"]:
                    result = deliver(sqs, queue)  # the first message may be s3:TestEvent
                if result["batchItemFailures"]:
                    console.print(f"[red]segment {path.name} failed: {result}")
                    continue
                seq = int(path.stem.split("_")[-1])
                p = endpoint.store.get_prediction(f"s3://{bucket}/{stream}", seq)
                t = truth[path.name]
                rows.append({"segment": path.name, "truth": t["label"], "labels": t["labels"],
                             "ambiguous": t["ambiguous"], "label": p.label,
                             "correct": p.label in t["labels"], "confidence": p.confidence,
                             "review": p.review.needs_review, **p.timings_ms,
                             "total": (time.perf_counter() - started) * 1000.0})
                live.update(row_table(rows))
        summary = summarize(rows, classifier, endpoint, db)
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


def summarize(rows: list[dict], classifier, endpoint, db: Path) -> dict:
    def share(items, key):
        return round(sum(r[key] for r in items) / len(items), 3) if items else None

    clear = [r for r in rows if not r["ambiguous"]]
    totals = sorted(r["total"] for r in rows)
    return {
        "segments": len(rows), "model": classifier.card.version, "device": classifier.device,
        "accuracy": share(rows, "correct"), "accuracy_unambiguous": share(clear, "correct"),
        "review_rate": share(rows, "review"),
        "review_rate_ambiguous": share([r for r in rows if r["ambiguous"]], "review"),
        "upload_to_stored_ms": {"p50": round(statistics.median(totals), 1) if totals else None,
                                "max": round(totals[-1], 1) if totals else None},
        "review_tasks_pending": len(endpoint.store.review_tasks()), "store": str(db),
    }
