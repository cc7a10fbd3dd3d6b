"""The endpoint over HTTP, called exactly as AWS callers call it: boto3's own sagemaker-runtime
client with endpoint_url pointed at `clipwatch serve`, S3 and DynamoDB through moto's server."""

import json
import re
import uuid

import boto3
import httpx
import numpy as np
import pytest
from botocore.exceptions import ClientError

from clipwatch.config import Settings
from clipwatch.store.dynamodb import DynamoStore
from inference.server import BackgroundServer, create_app
from inference.predictor import Endpoint

BUCKET = "clipwatch-segments"


@pytest.fixture(scope="module")
def served(aws, media, tiny_classifier):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket="someone-elses")
    for name in ("segment", "segment2", "truncated", "audio_only", "short", "garbage"):
        s3.upload_file(str(media[name]), BUCKET, f"live/{media[name].name}")
    s3.upload_file(str(media["segment"]), "someone-elses", "live/live_00001.ts")
    prefix = f"ep{uuid.uuid4().hex[:8]}"
    DynamoStore(prefix).create_tables()
    settings = Settings(store_url=f"dynamodb://{prefix}", allowed_buckets=(BUCKET,),
                        allowed_dirs=(media["dir"],))
    # Served as `clipwatch serve` serves: decoding in a worker process, batched forwards; without
    # proposals, whose background forwards would share the batcher these tests count
    # (tests/test_presegment.py covers them).
    endpoint = Endpoint.from_settings(tiny_classifier, settings, decode_workers=1, propose=False)
    endpoint.warm_up()
    try:
        with BackgroundServer(create_app(endpoint)) as server:
            runtime = boto3.client("sagemaker-runtime", endpoint_url=server.url)
            yield server, runtime, endpoint.store
    finally:
        endpoint.close()


def invoke(runtime, body) -> dict:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    resp = runtime.invoke_endpoint(EndpointName="clipwatch", ContentType="application/json",
                                   Accept="application/json", Body=raw)
    return json.loads(resp["Body"].read())


def rejected(runtime, body, content_type="application/json") -> tuple[int, dict]:
    """boto3 surfaces a container's 4xx as ModelError with the original status and body."""
    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint(EndpointName="clipwatch", ContentType=content_type, Body=body)
    err = info.value.response
    assert err["Error"]["Code"] == "ModelError"
    return err["OriginalStatusCode"], json.loads(err["OriginalMessage"])


def metric(server, name: str, **labels) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}{{{sel}}} ([0-9.e+-]+)$" if sel else rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_ping_reports_model_and_device(served, tiny_classifier):
    server, _, _ = served
    body = httpx.get(f"{server.url}/ping").json()
    # The default runtime is the fastest correct one for this CPU (torch-bf16 with AMX); int8
    # learnt while serving is off in this test session (tests/test_auto_int8.py turns it on)
    backend = tiny_classifier.backend
    assert backend in ("torch-bf16", "torch-fp32", "mxnet-fp32")
    assert body.pop("precision") == {"serving": backend, "auto_int8": "off", "reason":
                                     f"serving {backend}: automatic int8 is turned off (CLIPWATCH_AUTO_INT8=off)"}
    assert body == {"status": "healthy", "model_version": "tiny-1", "device": "cpu",
                    "architecture": "i3d_resnet50_v1_custom", "backend": tiny_classifier.backend,
                    "decoder": "pyav", "classes": 4,
                    "review_routing": "fallback thresholds: no operating point in model.json "
                                      "(clipwatch evaluate --routing fits one)",
                    "deployment": None}  # a model directory, served as it is (no promotions)


def test_boto3_invoke_endpoint_s3_segment_lands_in_dynamodb(served):
    server, runtime, store = served
    uri = f"s3://{BUCKET}/live/live_00001.ts"
    p = invoke(runtime, {"s3_uri": uri})
    assert p["stream_id"] == f"s3://{BUCKET}/live" and p["sequence"] == 1
    assert p["label"] in {"walking", "running", "jumping", "waving"}
    assert len(p["top_k"]) == 4 and p["top_k"][0]["label"] == p["label"]
    assert p["confidence"] == pytest.approx(p["top_k"][0]["probability"])
    assert p["margin"] == pytest.approx(p["top_k"][0]["probability"] - p["top_k"][1]["probability"])
    assert 0 <= p["entropy"] <= 1.3863  # ln 4
    assert set(p["timings_ms"]) == {"fetch", "decode", "preprocess", "model", "signals", "store", "total"}
    assert p["frames"] == [list(range(142, 157, 2))]  # centered (no keyframe within 7 frames)
    assert p["model_version"] == "tiny-1" and p["stored"] is True
    # The embedding: the classifier's 2048-d input (I3D-R50 pooled features), unit length.
    emb = np.asarray(p["embedding"])
    assert emb.shape == (2048,) and np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-6)
    # Readable from DynamoDB, through boto3, as the table's own item and through the store.
    item = boto3.client("dynamodb").get_item(
        TableName=store.predictions_table,
        Key={"stream_id": {"S": p["stream_id"]}, "sequence": {"N": "1"}})["Item"]
    assert item["segment_uri"]["S"] == uri and item["label"]["S"] == p["label"]
    assert float(item["probability"]["N"]) == pytest.approx(p["confidence"])
    assert store.get_prediction(p["stream_id"], 1).label == p["label"]
    # A repeated event for the same segment and model version writes nothing.
    before = metric(server, "clipwatch_predictions_duplicate_total")
    again = invoke(runtime, {"s3_uri": uri})
    assert again["stored"] is False and again["label"] == p["label"]
    # Stable: the same segment gives the same embedding.
    np.testing.assert_allclose(again["embedding"], p["embedding"], atol=1e-6)
    assert metric(server, "clipwatch_predictions_duplicate_total") == before + 1


def test_seed_sample_body_and_explicit_keys(served):
    _, runtime, store = served
    p = invoke(runtime, {"S3_VIDEO_PATH": f"s3://{BUCKET}/live/live_00002.ts",
                         "MODEL_MAX_FRAMES": 32, "DETECTION_TABLE_NAME": "ignored"})
    assert p["sequence"] == 2
    p = invoke(runtime, {"s3_uri": f"s3://{BUCKET}/live/live_00002.ts", "stream_id": "cam-7",
                         "sequence": 42, "start_time": 1700000000.0})
    assert (p["stream_id"], p["sequence"], p["start_time"]) == ("cam-7", 42, 1700000000.0)
    assert [x.sequence for x in store.timeline("cam-7")] == [42]


def test_local_file_uri(served, media):
    _, runtime, _ = served
    p = invoke(runtime, {"uri": str(media["segment2"]), "stream_id": "local"})
    assert p["segment_uri"] == str(media["segment2"]) and p["stored"] is True


def test_low_confidence_creates_a_review_task(served):
    _, runtime, store = served
    # Random weights over 4 classes give ~0.25 confidence: below the default 0.6 threshold.
    p = invoke(runtime, {"s3_uri": f"s3://{BUCKET}/live/live_00002.ts", "stream_id": "review-me",
                         "sequence": 1})
    assert p["review"]["needs_review"] is True and p["review"]["reasons"]
    tasks = [t for t in store.review_tasks() if t.stream_id == "review-me"]
    assert len(tasks) == 1 and tasks[0].label == p["label"]


BAD_INPUTS = [
    ("malformed JSON", b'{"s3_uri": ', 400, "invalid_request", "invalid request body"),
    ("not an object", b'["s3://x/y.ts"]', 400, "invalid_request", "invalid request body"),
    ("no URI", b'{"stream_id": "x"}', 400, "invalid_request", "exactly one of"),
    ("two URIs", json.dumps({"s3_uri": f"s3://{BUCKET}/a.ts", "uri": "/a.ts"}), 400,
     "invalid_request", "exactly one of"),
    ("unknown field", b'{"s3_uri": "s3://b/k.ts", "bogus": 1}', 400, "invalid_request", "bogus"),
    ("http URI", b'{"uri": "http://example.com/a.ts"}', 400, "invalid_uri", "unsupported segment URI"),
    ("relative path", b'{"uri": "seg.ts"}', 400, "invalid_uri", "unsupported segment URI"),
    ("bad S3 URI", b'{"s3_uri": "s3://x/"}', 400, "invalid_uri", "not a valid S3 URI"),
    ("bucket not allowed", b'{"s3_uri": "s3://someone-elses/live/live_00001.ts"}', 403,
     "not_allowed", "not in the allow-list"),
    ("file outside allowed dirs", b'{"uri": "/etc/passwd"}', 403, "not_allowed", "outside the allowed"),
    ("missing object", json.dumps({"s3_uri": f"s3://{BUCKET}/live/nope_00009.ts"}), 404,
     "segment_not_found", "no such segment"),
    ("corrupt segment", json.dumps({"s3_uri": f"s3://{BUCKET}/live/garbage.ts"}), 422,
     "undecodable_video", "not decodable"),
    ("truncated segment", json.dumps({"s3_uri": f"s3://{BUCKET}/live/truncated.ts"}), 422,
     "undecodable_video", "not decodable"),
    ("audio only", json.dumps({"s3_uri": f"s3://{BUCKET}/live/audio_only.ts"}), 422,
     "undecodable_video", "no video stream"),
    ("shorter than the clip", json.dumps({"s3_uri": f"s3://{BUCKET}/live/short.ts"}), 422,
     "video_too_short", "needs 15"),
]


@pytest.mark.parametrize("case,body,status,code,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_counted_4xx_that_writes_nothing(served, case, body, status, code, message):
    server, runtime, store = served
    before = metric(server, "clipwatch_endpoint_invocations_total", outcome=code)
    rows_before = boto3.client("dynamodb").scan(TableName=store.predictions_table)["Count"]
    got_status, got = rejected(runtime, body)
    assert got_status == status and got["error"]["code"] == code
    assert message in got["error"]["message"]
    assert metric(server, "clipwatch_endpoint_invocations_total", outcome=code) == before + 1
    assert boto3.client("dynamodb").scan(TableName=store.predictions_table)["Count"] == rows_before
    assert httpx.get(f"{server.url}/ping").status_code == 200  # still serving


def test_zero_frame_media_and_wrong_content_type(served, media):
    server, runtime, _ = served
    status, body = rejected(runtime, json.dumps({"uri": str(media["empty"])}))
    assert (status, body["error"]["code"]) == (422, "undecodable_video")
    status, body = rejected(runtime, media["segment"].read_bytes()[:1000], content_type="video/mp2t")
    assert (status, body["error"]["code"]) == (415, "unsupported_media_type")


def test_metrics_expose_phases_outcomes_in_flight_and_model(served):
    server, runtime, _ = served
    invoke(runtime, {"s3_uri": f"s3://{BUCKET}/live/live_00001.ts", "stream_id": "metrics"})
    text = httpx.get(f"{server.url}/metrics").text
    for phase in ("fetch", "decode", "preprocess", "model", "store", "total"):
        assert f'clipwatch_endpoint_phase_seconds_count{{phase="{phase}"}}' in text
    assert metric(server, "clipwatch_endpoint_invocations_total", outcome="ok") >= 1
    assert "clipwatch_endpoint_in_flight 0.0" in text
    assert re.search(r'clipwatch_model_info\{.*device="cpu".*version="tiny-1".*\} 1\.0', text)


def test_concurrent_requests_are_batched_and_answer_like_sequential_ones(served):
    from concurrent.futures import ThreadPoolExecutor

    server, runtime, _ = served
    uri = f"s3://{BUCKET}/live/live_00002.ts"
    alone = invoke(runtime, {"s3_uri": uri, "stream_id": "batch-ref", "sequence": 1})
    before = metric(server, "clipwatch_endpoint_batch_clips_count")
    clients = [boto3.client("sagemaker-runtime", endpoint_url=server.url) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: invoke(clients[i], {"s3_uri": uri, "stream_id": "batch",
                                                           "sequence": i}), range(4)))
    for p in got:
        assert p["label"] == alone["label"] and p["stored"] is True
        # bf16 kernels may block a batch of 4 differently from a batch of 1: equal to ~1e-3.
        assert p["confidence"] == pytest.approx(alone["confidence"], abs=1e-3)
        np.testing.assert_allclose(p["embedding"], alone["embedding"], atol=1e-3)
    # Every request went through the batcher (1 to 4 clips per forward, as they arrived), and so
    # did the second clip of each doubtful one (the random-weight model doubts everything).
    forwards = metric(server, "clipwatch_endpoint_batch_clips_count") - before
    second_clips = sum(p["signals"]["disagreement"] is not None for p in got)
    assert 1 <= forwards <= 4 + second_clips
