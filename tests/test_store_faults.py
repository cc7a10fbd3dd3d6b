"""DynamoDB as it misbehaves: a proxy in front of moto's server answers a share of requests
with ProvisionedThroughputExceededException (400), InternalServerError (500) or, for a
transaction, a cancellation for throttling — before anything is written, as DynamoDB does.
Every prediction must end up stored exactly once with its review task when flagged: retried
with backoff, never half-written."""

from __future__ import annotations

import http.server
import json
import random
import threading
import uuid
import urllib.request

import boto3

from clipwatch.records import LabelScore, Prediction, ReviewDecision
from clipwatch.store import save_prediction
from clipwatch.store.dynamodb import DynamoStore

FAULT_SHARE = 0.3


def faulty_proxy(upstream: str, seed: int = 7):
    rng, lock = random.Random(seed), threading.Lock()
    counts = {"forwarded": 0, "throttled": 0, "server_error": 0, "transaction_throttled": 0}

    class Proxy(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            target = self.headers.get("X-Amz-Target", "")
            with lock:
                roll = rng.random()
            setup = target.endswith(("CreateTable", "DescribeTable", "ListTables"))
            if not setup and roll < FAULT_SHARE / 2:
                if target.endswith("TransactWriteItems"):
                    kind, status = "transaction_throttled", 400
                    payload = {"__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                               "Message": "Transaction cancelled, please refer cancellation reasons for specific "
                                          "reasons [None, ThrottlingError]",
                               "CancellationReasons": [{"Code": "None"}, {"Code": "ThrottlingError",
                                                                          "Message": "Throughput exceeds the current capacity"}]}
                else:
                    kind, status = "throttled", 400
                    payload = {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                               "message": "The level of configured provisioned throughput for the table was exceeded."}
                return self._answer(kind, status, payload)
            if not setup and roll < FAULT_SHARE:
                return self._answer("server_error", 500, {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                                                          "message": "Internal server error"})
            request = urllib.request.Request(upstream + self.path, data=body, method="POST",
                                             headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status, data, ctype = response.status, response.read(), response.headers.get("Content-Type")
            except urllib.error.HTTPError as exc:
                status, data, ctype = exc.code, exc.read(), exc.headers.get("Content-Type")
            with lock:
                counts["forwarded"] += 1
            self.send_response(status)
            self.send_header("Content-Type", ctype or "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _answer(self, kind: str, status: int, payload: dict) -> None:
            with lock:
                counts[kind] += 1
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, counts


def prediction(seq: int, flagged: bool) -> Prediction:
    return Prediction(stream_id="s3://b/cam", sequence=seq, segment_uri=f"s3://b/cam/seg_{seq:05d}.ts",
                      model_version="v1", model_created_at="2026-11-01T00:00:00Z", label="running",
                      confidence=0.4 if flagged else 0.9, margin=0.1, entropy=0.5,
                      top_k=[LabelScore(label="running", probability=0.4)], frames=[[0]], device="cpu",
                      timings_ms={}, review=ReviewDecision(needs_review=flagged, reasons=["low"] if flagged else []))


def test_throttling_and_5xx_are_retried_and_nothing_is_half_written(aws, monkeypatch):
    prefix = f"faults{uuid.uuid4().hex[:6]}"
    DynamoStore(prefix).create_tables()  # straight to moto
    proxy, counts = faulty_proxy(aws.url)
    try:
        # The store builds its own client, as the endpoint does, pointed at the proxy.
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{proxy.server_address[1]}")
        store = DynamoStore(prefix)
        flagged = {seq for seq in range(60) if seq % 2 == 0}
        for seq in range(60):
            p = prediction(seq, seq in flagged)
            task = save_prediction(store, p)
            assert p.stored is True and (task is not None) == (seq in flagged)
        for seq in range(0, 60, 3):  # redelivered events: written nothing, created nothing
            p = prediction(seq, seq in flagged)
            assert save_prediction(store, p) is None and p.stored is False
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert counts["throttled"] + counts["transaction_throttled"] >= 5 and counts["server_error"] >= 5, counts
    # Count what really is in the tables (moto directly): one of each, none missing, no task orphaned.
    direct = boto3.client("dynamodb", endpoint_url=aws.url)
    predictions = direct.scan(TableName=f"{prefix}-predictions", Select="COUNT")["Count"]
    tasks = direct.scan(TableName=f"{prefix}-review-tasks")["Items"]
    assert predictions == 60
    assert sorted(int(t["sequence"]["N"]) for t in tasks) == sorted(flagged)
