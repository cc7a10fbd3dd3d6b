"""Lambda trigger: S3 ObjectCreated events for HLS segments → SageMaker endpoint invocation.

Accepts the three shapes S3 events arrive in: a direct S3 notification, the same notification
wrapped in SQS messages, and EventBridge "Object Created" events (directly or through SQS).
Only keys ending in SEGMENT_SUFFIXES (default ``.ts``) are sent; playlists and other keys are
skipped. With SQS, failed records are returned as ``batchItemFailures`` (configure the event
source mapping with ReportBatchItemFailures) so one bad segment never redelivers the batch.

Imports only the standard library and boto3: it must start fast and fit in a plain Lambda.
Environment: ENDPOINT_NAME (required), SEGMENT_SUFFIXES, MAX_ATTEMPTS (default 5),
SAGEMAKER_RUNTIME_ENDPOINT_URL (tests and local stacks).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import urllib.parse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("clipwatch.lambda")
log.setLevel(logging.INFO)

RETRYABLE = {"ThrottlingException", "ModelNotReadyException", "ServiceUnavailable",
             "InternalFailure", "InternalServerError", "TooManyRequestsException"}
_runtime = None  # reused across warm invocations


def runtime():
    global _runtime
    if _runtime is None:
        _runtime = boto3.client(
            "sagemaker-runtime", endpoint_url=os.environ.get("SAGEMAKER_RUNTIME_ENDPOINT_URL"),
            config=Config(retries={"max_attempts": 1}, read_timeout=70, connect_timeout=5))
    return _runtime


def segment_objects(event: dict) -> list[tuple[str, str]]:
    """(bucket, key) of every object in an S3 notification or EventBridge event."""
    if event.get("source") == "aws.s3" and "detail" in event:  # EventBridge: keys not encoded
        detail = event["detail"]
        return [(detail["bucket"]["name"], detail["object"]["key"])]
    objects = []
    for record in event.get("Records", []):
        if "s3" in record:  # S3 notifications URL-encode keys (space as '+')
            objects.append((record["s3"]["bucket"]["name"],
                            urllib.parse.unquote_plus(record["s3"]["object"]["key"])))
    return objects  # s3:TestEvent and unrelated payloads have none


def is_segment(key: str) -> bool:
    suffixes = tuple(s.strip() for s in os.environ.get("SEGMENT_SUFFIXES", ".ts").split(",") if s.strip())
    return key.endswith(suffixes)


def _retry_after(headers: dict) -> float:
    try:
        return max(0.0, float(headers.get("retry-after", 0)))
    except (TypeError, ValueError):
        return 0.0


def invoke(bucket: str, key: str, deadline: float) -> dict:
    """Invoke the endpoint for one segment, backing off on throttling and cold models."""
    body = json.dumps({"s3_uri": f"s3://{bucket}/{key}"})
    attempts = int(os.environ.get("MAX_ATTEMPTS", "5"))
    for attempt in range(1, attempts + 1):
        try:
            resp = runtime().invoke_endpoint(EndpointName=os.environ["ENDPOINT_NAME"],
                                             ContentType="application/json",
                                             Accept="application/json", Body=body)
            return json.loads(resp["Body"].read())
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            meta = exc.response.get("ResponseMetadata", {})
            status = meta.get("HTTPStatusCode", 0)
            if (code not in RETRYABLE and status < 500 and status != 429) or attempt == attempts:
                raise  # for an SQS batch: this record is reported failed and redelivered later
            error = code or str(status)
            asked = _retry_after(meta.get("HTTPHeaders", {}))
        except BotoCoreError as exc:  # connection reset, timeouts
            if attempt == attempts:
                raise
            error, asked = type(exc).__name__, 0.0
        # Full jitter, and at least what an overloaded endpoint asked for (Retry-After).
        delay = max(asked, min(8.0, 0.2 * 2 ** attempt) * random.uniform(0.5, 1.0))
        if time.monotonic() + delay > deadline:
            raise TimeoutError(f"no time left to retry s3://{bucket}/{key} after {error}")
        log.warning("retrying s3://%s/%s after %s (attempt %d)", bucket, key, error, attempt)
        time.sleep(delay)
    raise AssertionError("unreachable")


def process(event: dict, deadline: float) -> list[dict]:
    results = []
    for bucket, key in segment_objects(event):
        if not is_segment(key):
            log.info("skipping s3://%s/%s: not a segment", bucket, key)
            continue
        prediction = invoke(bucket, key, deadline)
        log.info(json.dumps({"segment": f"s3://{bucket}/{key}", "label": prediction.get("label"),
                             "confidence": prediction.get("confidence")}))
        results.append(prediction)
    return results


def handler(event: dict, context=None) -> dict:
    remaining_ms = context.get_remaining_time_in_millis() if context else 60_000
    deadline = time.monotonic() + remaining_ms / 1000.0 - 2.0
    records = event.get("Records", [])
    if records and records[0].get("eventSource") == "aws:sqs":
        failures, done = [], 0
        for record in records:
            try:
                done += len(process(json.loads(record["body"]), deadline))
            except Exception as exc:  # report this message only; the rest of the batch is done
                log.error("segment message %s failed: %s", record.get("messageId"), exc)
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures, "invoked": done}
    # Direct S3 or EventBridge invocations: raising makes Lambda retry the event.
    return {"invoked": len(process(event, deadline))}
