"""`clipwatch stack up|status|down`: every service starts as its own process on loopback,
answers its health check and its real protocol, and `down` stops all of them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def stack(*args, cwd):
    return subprocess.run([sys.executable, "-m", "clipwatch.cli", "stack", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900)  # `up` waits for every service's health


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def stack_dir(tmp_path):
    d = tmp_path / "stack"
    yield d
    if (d / "state.json").exists():  # a failed test must not leave processes behind
        stack("down", "--dir", str(d), cwd=tmp_path)


def test_up_starts_everything_healthy_and_down_stops_it(stack_dir, tmp_path):
    import boto3
    import httpx
    from kafka import KafkaAdminClient

    up = stack("up", "--dir", str(stack_dir), "--model", str(ROOT / "models" / "demo"), cwd=tmp_path)
    assert up.returncode == 0, up.stderr[-3000:]
    state = json.loads((stack_dir / "state.json").read_text())
    services = {s["name"]: s for s in state["services"]}
    expected = {"aws", "kafka", "endpoint"} | ({"review"} if "review" in services else set())
    assert set(services) == expected
    assert all(Path(s["log"]).parent == stack_dir / "logs" for s in services.values())

    status = stack("status", "--dir", str(stack_dir), cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.count("healthy") == len(services), status.stdout

    # each speaks its protocol: S3 → SQS notification, DynamoDB tables, Kafka metadata, the endpoint
    env = state["env"]
    kw = dict(endpoint_url=services["aws"]["url"], region_name="us-east-1",
              aws_access_key_id="testing", aws_secret_access_key="testing")
    s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
    s3.put_object(Bucket="clipwatch-segments", Key="live/seg_00001.ts", Body=b"x")
    bodies = [m["Body"] for _ in range(3) for m in sqs.receive_message(  # S3 sends a TestEvent first
        QueueUrl=state["aws"]["queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])]
    assert any("live%2Fseg_00001.ts" in b and "ObjectCreated" in b for b in bodies), bodies  # keys arrive URL-encoded
    tables = boto3.client("dynamodb", **kw).list_tables()["TableNames"]
    assert {"clipwatch-predictions", "clipwatch-review-tasks"} <= set(tables)
    admin = KafkaAdminClient(bootstrap_servers=env["CLIPWATCH_KAFKA"].removeprefix("kafka://"))
    admin.list_topics()
    admin.close()
    ping = httpx.get(f"{services['endpoint']['url']}/ping").json()
    assert ping["status"] == "healthy" and ping["model_version"].startswith("i3d-tiny")
    if "review" in services:
        assert httpx.get(services["review"]["url"]).status_code < 500
    assert "export AWS_ENDPOINT_URL_S3=" in (stack_dir / "env.sh").read_text()

    again = stack("up", "--dir", str(stack_dir), cwd=tmp_path)
    assert again.returncode == 2 and "already running" in again.stderr

    down = stack("down", "--dir", str(stack_dir), cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert down.stdout.count("stopped") == len(services), down.stdout
    for s in services.values():
        assert not Path(f"/proc/{s['pid']}").exists() or \
            Path(f"/proc/{s['pid']}/stat").read_text().split(") ")[1][0] == "Z"
        assert not listening(s["port"]), s["name"]
    assert not (stack_dir / "state.json").exists()
    assert (stack_dir / "logs" / "endpoint.log").stat().st_size > 0   # logs outlive the stack
    assert "nothing to stop" in stack("down", "--dir", str(stack_dir), cwd=tmp_path).stdout


def test_up_with_a_missing_model_says_so_and_starts_nothing(stack_dir, tmp_path):
    proc = stack("up", "--dir", str(stack_dir), "--model", str(tmp_path / "nope"), cwd=tmp_path)
    assert proc.returncode == 2 and f"no model directory at {tmp_path / 'nope'}" in proc.stderr
    assert not (stack_dir / "state.json").exists()


def test_status_without_a_stack(tmp_path):
    proc = stack("status", "--dir", str(tmp_path / "none"), cwd=tmp_path)
    assert proc.returncode == 3 and "no stack running" in proc.stdout
