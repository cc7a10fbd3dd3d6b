"""The Lambda trigger, through the whole cloud path on loopback: a .ts upload → S3 bucket
notification → SQS (moto's server) → handler → boto3 sagemaker-runtime → the endpoint over
HTTP → DynamoDB item."""

import io
import json
import subprocess
import sys
import uuid

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from clipwatch.config import Settings
from clipwatch.store.dynamodb import DynamoStore
from inference import lambda_handler
from inference.predictor import Endpoint
from inference.server import BackgroundServer, create_app


def test_importing_the_handler_loads_neither_mxnet_nor_numpy():
    code = ("import sys, inference.lambda_handler; "
            "bad = [m for m in ('mxnet', 'numpy', 'decord', 'clipwatch') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def s3_record(bucket, key):
    return {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}


def test_event_shapes_and_key_decoding():
    direct = {"Records": [s3_record("b", "live/seg+1%2B.ts"), s3_record("b", "live/index.m3u8")]}
    assert lambda_handler.segment_objects(direct) == [("b", "live/seg 1+.ts"), ("b", "live/index.m3u8")]
    bridge = {"source": "aws.s3", "detail-type": "Object Created",
              "detail": {"bucket": {"name": "b"}, "object": {"key": "live/seg 2.ts"}}}
    assert lambda_handler.segment_objects(bridge) == [("b", "live/seg 2.ts")]
    assert lambda_handler.segment_objects({"Event": "s3:TestEvent"}) == []
    assert lambda_handler.is_segment("a/b.ts") and not lambda_handler.is_segment("a/live.m3u8")


@pytest.fixture(scope="module")
def cloud(aws, tiny_classifier):
    prefix = f"lam{uuid.uuid4().hex[:6]}"
    store = DynamoStore(prefix)
    store.create_tables()
    endpoint = Endpoint.from_settings(tiny_classifier, Settings(store_url=f"dynamodb://{prefix}"))
    with BackgroundServer(create_app(endpoint)) as server:
        yield server, store


@pytest.fixture
def env(cloud, monkeypatch):
    server, store = cloud
    monkeypatch.setenv("ENDPOINT_NAME", "clipwatch-endpoint")
    monkeypatch.setenv("SAGEMAKER_RUNTIME_ENDPOINT_URL", server.url)
    monkeypatch.setattr(lambda_handler, "_runtime", None)
    return store


def test_bucket_notification_through_sqs_to_dynamodb(env, bucket, media):
    store = env
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"segments-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    s3.upload_file(str(media["segment"]), bucket, "cam1/seg_00017.ts")
    s3.put_object(Bucket=bucket, Key="cam1/live.m3u8", Body=b"#EXTM3U\n")  # not a segment

    messages = []
    for _ in range(5):
        resp = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages += resp.get("Messages", [])
        if len(messages) >= 2:
            break
    bodies = [json.loads(m["Body"]) for m in messages]
    keys = sorted(k for b in bodies for _, k in lambda_handler.segment_objects(b))
    assert keys == ["cam1/live.m3u8", "cam1/seg_00017.ts"]  # keys arrive URL-encoded

    event = {"Records": [{"eventSource": "aws:sqs", "messageId": m["MessageId"], "body": m["Body"]}
                         for m in messages]}
    result = lambda_handler.handler(event)
    assert result == {"batchItemFailures": [], "invoked": 1}
    item = boto3.client("dynamodb").get_item(
        TableName=store.predictions_table,
        Key={"stream_id": {"S": f"s3://{bucket}/cam1"}, "sequence": {"N": "17"}})["Item"]
    assert item["segment_uri"]["S"] == f"s3://{bucket}/cam1/seg_00017.ts"


def test_sqs_partial_batch_failure_reports_only_the_bad_record(env, bucket):
    good = {"Records": [s3_record(bucket, "live/live_00001.ts")]}
    missing = {"Records": [s3_record(bucket, "live/live_09999.ts")]}
    event = {"Records": [
        {"eventSource": "aws:sqs", "messageId": "m-good", "body": json.dumps(good)},
        {"eventSource": "aws:sqs", "messageId": "m-missing", "body": json.dumps(missing)},
        {"eventSource": "aws:sqs", "messageId": "m-garbled", "body": "{not json"},
    ]}
    result = lambda_handler.handler(event)
    assert result["invoked"] == 1
    assert result["batchItemFailures"] == [{"itemIdentifier": "m-missing"},
                                           {"itemIdentifier": "m-garbled"}]
    assert env.get_prediction(f"s3://{bucket}/live", 1) is not None


def test_direct_and_eventbridge_events(env, bucket):
    assert lambda_handler.handler({"Records": [s3_record(bucket, "live/live_00002.ts")]}) == {"invoked": 1}
    bridge = {"source": "aws.s3", "detail-type": "Object Created",
              "detail": {"bucket": {"name": bucket}, "object": {"key": "live/live_00001.ts"}}}
    assert lambda_handler.handler(bridge) == {"invoked": 1}
    with pytest.raises(Exception, match="404"):  # direct invocations raise so Lambda retries
        lambda_handler.handler({"Records": [s3_record(bucket, "live/nope_00003.ts")]})


def test_throttling_is_retried_with_backoff(monkeypatch):
    monkeypatch.setenv("ENDPOINT_NAME", "e")
    monkeypatch.setattr(lambda_handler.time, "sleep", lambda s: None)
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    monkeypatch.setattr(lambda_handler, "_runtime", client)
    with Stubber(client) as stub:
        for code in ("ThrottlingException", "ModelNotReadyException"):
            stub.add_client_error("invoke_endpoint", service_error_code=code, http_status_code=400)
        body = json.dumps({"label": "x"}).encode()
        stub.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(body), len(body)),
                                              "ContentType": "application/json"})
        assert lambda_handler.invoke("b", "k.ts", deadline=float("inf")) == {"label": "x"}
        stub.assert_no_pending_responses()
    with Stubber(client) as stub:  # a model's own 4xx is not retried
        stub.add_client_error("invoke_endpoint", service_error_code="ModelError", http_status_code=424)
        with pytest.raises(Exception, match="ModelError"):
            lambda_handler.invoke("b", "k.ts", deadline=float("inf"))


RUN_FROM_ZIP = """
import json, sys
sys.path.insert(0, sys.argv[1])
NOT_IN_LAMBDA = {"clipwatch", "streaming", "training", "review", "loadtest", "numpy", "mxnet", "torch"}
class NotInLambda:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in NOT_IN_LAMBDA:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the Lambda zip)", name=name)
sys.meta_path.insert(0, NotInLambda())
module, function = sys.argv[2].rsplit(".", 1)
handler = __import__(module, fromlist=[function])
assert handler.__file__.startswith(sys.argv[1]), handler.__file__
print(json.dumps(getattr(handler, function)(json.loads(sys.argv[3]))))
"""


def test_the_packaged_lambda_zip_runs_the_trigger_on_its_own(env, bucket, tmp_path):
    """`clipwatch package lambda` → the zip the stack deploys, imported the way Lambda does (the
    zip on the path, nothing else of the project importable) → the endpoint → DynamoDB."""
    import os

    from clipwatch import packaging

    bundle = packaging.lambda_zip(tmp_path / "clipwatch-trigger.zip")
    event = {"Records": [{"eventSource": "aws:sqs", "messageId": "m1",
                          "body": json.dumps({"Records": [s3_record(bucket, "zip/seg_00031.ts")]})}]}
    boto3.client("s3").copy_object(Bucket=bucket, Key="zip/seg_00031.ts",
                                   CopySource={"Bucket": bucket, "Key": "live/live_00001.ts"})
    proc = subprocess.run([sys.executable, "-c", RUN_FROM_ZIP, str(bundle), packaging.HANDLER, json.dumps(event)],
                          capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"batchItemFailures": [], "invoked": 1}
    assert env.get_prediction(f"s3://{bucket}/zip", 31) is not None
