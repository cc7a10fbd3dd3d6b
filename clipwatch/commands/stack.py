"""`clipwatch stack up|down|status`: the whole system on loopback, as separate processes.

``up`` starts moto's server (S3, SQS, DynamoDB, Application Auto Scaling), the tansu Kafka
broker, the endpoint (``clipwatch serve``) and, when that command exists, the review app
(``clipwatch review``), each in its own process group with its log in ``DIR/logs/``; waits for
each to answer its health check; provisions the segment bucket (notifications → SQS) and the
DynamoDB tables; and writes ``DIR/state.json`` (pids, ports, commands) and ``DIR/env.sh``.
``down`` stops what the state file names (SIGTERM to the group, then SIGKILL), and only
processes whose command line is still the one it started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

PROG = "clipwatch stack"
BUCKET = "clipwatch-segments"
QUEUE = "clipwatch-segments"
TABLE_PREFIX = "clipwatch"
HOST = "127.0.0.1"
AWS_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    from clipwatch.localstack import free_port

    return free_port(HOST)


def _aws_env(url: str) -> dict[str, str]:
    from clipwatch.localstack import ENDPOINT_VARIABLES

    return {**AWS_CREDENTIALS, **{name: url for name in ENDPOINT_VARIABLES}}


def _has_command(name: str) -> bool:
    from clipwatch.cli import parser

    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return name in sub.choices


# --- processes -------------------------------------------------------------------------------

def _spawn(name: str, cmd: list[str], env: dict, logs: Path) -> dict:
    log = logs / f"{name}.log"
    with log.open("ab") as f:
        f.write(f"\n--- {datetime.now(timezone.utc).isoformat()} {' '.join(cmd)}\n".encode())
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **env}, start_new_session=True)
    _children[proc.pid] = proc
    return {"name": name, "pid": proc.pid, "cmd": cmd, "log": str(log)}


_children: dict[int, subprocess.Popen] = {}  # what this `up` started: exit codes during start-up


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").rstrip("\0").split("\0") if raw else None


def _alive(svc: dict) -> bool:
    """The pid runs the command we started (a recycled pid belongs to someone else)."""
    for _ in range(40):
        try:
            state = Path(f"/proc/{svc['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state == "Z":
            return False
        cmdline = _cmdline(svc["pid"])
        if cmdline:
            return cmdline == svc["cmd"]
        time.sleep(0.025)  # /proc/PID/cmdline reads empty while the process is still exec'ing
    return False


def _stop(svc: dict, grace_s: float = 10.0) -> str:
    if not _alive(svc):
        return "not running"
    pgid = svc["pid"]  # start_new_session: the service leads its own group
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _alive(svc):
            return "stopped"
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return "killed after SIGTERM timed out"


# --- health checks ---------------------------------------------------------------------------

def _http_ok(url: str) -> bool:
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)

    try:
        return httpx.get(url, timeout=2.0).status_code < 500
    except httpx.HTTPError:
        return False


def _kafka_ok(port: int) -> bool:
    try:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=f"{HOST}:{port}", request_timeout_ms=3000)
        admin.list_topics()
        admin.close()
        return True
    except Exception:
        return False


def _healthy(svc: dict) -> bool:
    kind = svc["health"]
    if kind == "kafka":
        return _kafka_ok(svc["port"])
    return _http_ok(svc["health_url"])


def _wait_healthy(svc: dict, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc = _children.get(svc["pid"])
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{svc['name']} exited during start-up with status {proc.returncode}")
        if not _alive(svc):
            raise RuntimeError(f"{svc['name']} is not running (pid {svc['pid']})")
        if _healthy(svc):
            return
        time.sleep(0.25)
    raise RuntimeError(f"{svc['name']} did not pass its health check within {timeout_s:g} s")


def _tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- provisioning ----------------------------------------------------------------------------

def _provision(aws_url: str) -> dict:
    """The bucket MediaLive would write to (events → SQS, as the CloudFormation stack wires
    it), and the DynamoDB tables of the store."""
    import boto3

    from clipwatch.store.dynamodb import DynamoStore

    kw = dict(endpoint_url=aws_url, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
    s3.create_bucket(Bucket=BUCKET)
    queue = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
                                 "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".ts"}]}}}]})
    DynamoStore(prefix=TABLE_PREFIX, client=boto3.client("dynamodb", **kw)).create_tables()
    return {"bucket": BUCKET, "queue_url": queue, "store": f"dynamodb://{TABLE_PREFIX}"}


# --- commands --------------------------------------------------------------------------------

def _state_file(d: Path) -> Path:
    return d / "state.json"


def _load_state(d: Path) -> dict | None:
    try:
        return json.loads(_state_file(d).read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{PROG}: {_state_file(d)} is unreadable ({exc}); remove it after "
                         "checking no stack processes are left") from None


def _plan(args, logs: Path) -> list[dict]:
    """The services in start order, with their commands, ports and health checks."""
    py = sys.executable
    ports = {name: _free_port() for name in ("aws", "kafka", "endpoint", "review")}
    aws_url = f"http://{HOST}:{ports['aws']}"
    env = _aws_env(aws_url)
    store = f"dynamodb://{TABLE_PREFIX}"
    from streaming.tansu import binary

    listener = f"tcp://{HOST}:{ports['kafka']}"
    plan = [
        {"name": "aws", "port": ports["aws"], "url": aws_url, "health": "http",
         "health_url": f"{aws_url}/moto-api/", "cmd": [py, "-m", "moto.server", "-H", HOST, "-p", str(ports["aws"])],
         "env": {}},
        {"name": "kafka", "port": ports["kafka"], "url": f"kafka://{HOST}:{ports['kafka']}", "health": "kafka",
         "cmd": [str(binary()), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
                 "--storage-engine", "memory://tansu/"], "env": {}},
        {"name": "endpoint", "port": ports["endpoint"], "url": f"http://{HOST}:{ports['endpoint']}",
         "health": "http", "health_url": f"http://{HOST}:{ports['endpoint']}/ping",
         "cmd": [py, "-m", "clipwatch.cli", "serve", "--model", str(args.model), "--host", HOST,
                 "--port", str(ports["endpoint"]), "--store", store, "--allow-bucket", BUCKET,
                 "--log-level", "warning"], "env": env},
    ]
    if args.review and _has_command("review"):
        users = Path(args.dir).resolve() / "users.json"
        plan.append({"name": "review", "port": ports["review"], "url": f"http://{HOST}:{ports['review']}",
                     "health": "http", "health_url": f"http://{HOST}:{ports['review']}/",
                     "users": str(users),
                     "cmd": [py, "-m", "clipwatch.cli", "review", "--host", HOST, "--port", str(ports["review"]),
                             "--store", store, "--model", str(args.model), "--users", str(users),
                             "--allow-bucket", BUCKET, "--log-level", "warning"], "env": env})
    return plan


def _review_admin(users: str, logs: Path) -> str | None:
    """An admin user for the review app; its token (printed once, kept in the stack folder)."""
    proc = subprocess.run([sys.executable, "-m", "clipwatch.cli", "review-user", "add", "admin",
                           "--role", "admin", "--users", users], capture_output=True, text=True)
    (logs / "review-user.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"clipwatch review-user add failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else None


def _up(args) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    d = Path(args.dir).resolve()
    state = _load_state(d)
    if state and any(_alive(s) for s in state["services"]):
        return _fail(f"a stack is already running from {d} (clipwatch stack down --dir {args.dir} first)")
    if not Path(args.model).exists():
        return _fail(f"no model directory at {args.model} (--model)")
    logs = d / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if args.review and not _has_command("review"):
        console.print("[yellow]the review app is not part of this build (no `clipwatch review`): skipped")
    started: list[dict] = []
    state = {"dir": str(d), "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "services": started}
    try:
        for svc in _plan(args, logs):
            with console.status(f"starting {svc['name']}…"):
                if svc["name"] == "endpoint":
                    state["aws"] = _provision(started[0]["url"])
                if svc["name"] == "review":
                    state["review_admin_token"] = _review_admin(svc["users"], logs)
                env = svc.pop("env")
                info = {**svc, **_spawn(svc["name"], svc["cmd"], env, logs)}
                started.append(info)
                _state_file(d).write_text(json.dumps(state, indent=2))  # down finds partial stacks too
                _wait_healthy(info, args.timeout)
            console.print(f"[green]✓[/] {info['name']:9} {info['url']}  (pid {info['pid']}, log {info['log']})")
    except (RuntimeError, OSError, ValueError) as exc:
        console.print(f"[red]{PROG} up: {exc}")
        if started:
            console.print(f"last lines of {started[-1]['log']}:\n{_tail(started[-1]['log'])}")
        for svc in reversed(started):
            _stop(svc)
        _state_file(d).unlink(missing_ok=True)
        return 1
    aws_url = started[0]["url"]
    exports = {**_aws_env(aws_url), "CLIPWATCH_STORE": state["aws"]["store"],
               "CLIPWATCH_ENDPOINT_URL": started[2]["url"],
               "SAGEMAKER_RUNTIME_ENDPOINT_URL": started[2]["url"],
               "CLIPWATCH_KAFKA": f"kafka://{HOST}:{started[1]['port']}"}
    state["env"] = exports
    _state_file(d).write_text(json.dumps(state, indent=2))
    (d / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in exports.items()))
    console.print(f"bucket s3://{BUCKET} (→ SQS {QUEUE}), tables {TABLE_PREFIX}-*; "
                  f"`source {d / 'env.sh'}` to point boto3 and clipwatch at it; "
                  f"`clipwatch stack down --dir {args.dir}` stops it")
    if state.get("review_admin_token"):
        console.print(f"review app admin token: {state['review_admin_token']}")
    return 0


def _down(args) -> int:
    d = Path(args.dir).resolve()
    state = _load_state(d)
    if state is None:
        print(f"{PROG}: no stack state in {d} (nothing to stop)")
        return 0
    for svc in reversed(state["services"]):
        print(f"{svc['name']:9} pid {svc['pid']}: {_stop(svc)}")
    _state_file(d).unlink(missing_ok=True)
    print(f"logs kept in {d / 'logs'}")
    return 0


def _status(args) -> int:
    d = Path(args.dir).resolve()
    state = _load_state(d)
    if state is None:
        print(f"{PROG}: no stack running from {d}")
        return 3
    bad = 0
    for svc in state["services"]:
        alive = _alive(svc)
        healthy = alive and _healthy(svc)
        bad += not healthy
        print(f"{svc['name']:9} {svc['url']:32} pid {svc['pid']:<7} "
              f"{'healthy' if healthy else 'running, unhealthy' if alive else 'not running'}")
    return 1 if bad else 0


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def register(sub) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    stack = sub.add_parser(
        "stack", help="start/stop the whole system locally (moto, Kafka, endpoint, review app)",
        formatter_class=raw,
        description="Run moto's server (S3, SQS, DynamoDB, Application Auto Scaling), the tansu "
                    "Kafka broker, `clipwatch serve` and the review app on loopback ports, each "
                    "health-checked, logs in DIR/logs, state in DIR/state.json.",
        epilog="example:\n  clipwatch stack up --model models/demo && source .stack/env.sh\n"
               "  clipwatch stack status\n  clipwatch stack down")
    ssub = stack.add_subparsers(dest="stack_command", required=True)
    up = ssub.add_parser("up", help="start everything and wait until healthy", formatter_class=raw,
                         epilog="example:\n  clipwatch stack up --model models/demo --dir .stack")
    up.add_argument("--model", default="models/demo", help="model directory the endpoint serves")
    up.add_argument("--no-review", dest="review", action="store_false", help="leave the review app out")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds each service may take to become healthy")
    down = ssub.add_parser("down", help="stop what `up` started", formatter_class=raw,
                           epilog="example:\n  clipwatch stack down --dir .stack")
    status = ssub.add_parser("status", help="show each service's pid and health", formatter_class=raw,
                             epilog="example:\n  clipwatch stack status --dir .stack")
    for p in (up, down, status):
        p.add_argument("--dir", default=".stack", help="state and logs folder (.stack)")
    up.set_defaults(run=_up)
    down.set_defaults(run=_down)
    status.set_defaults(run=_status)
