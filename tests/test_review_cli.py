"""`clipwatch review-user` and `clipwatch review` from the command line: users get tokens, the
server starts and serves the UI, and mistakes are clear messages, not tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx

from clipwatch.localstack import free_port

CLI = [sys.executable, "-m", "clipwatch.cli"]
RUN_S = 300  # a hang guard on each command


def test_review_user_add_prints_a_token_and_stores_only_its_hash(tmp_path):
    users = tmp_path / "users.json"
    out = subprocess.run(CLI + ["review-user", "add", "alice", "--role", "auditor", "--users", str(users), "--days", "1"],
                         capture_output=True, text=True, check=True, timeout=RUN_S).stdout
    token = out.strip().splitlines()[-1]
    raw = json.loads(users.read_text())
    (entry,) = raw["users"]
    assert entry["name"] == "alice" and entry["role"] == "auditor" and token not in users.read_text()
    assert entry["expires_at"] > time.time() + 86000
    assert oct(users.stat().st_mode)[-3:] == "600"
    users.write_text("{broken")
    bad = subprocess.run(CLI + ["review-user", "add", "bob", "--users", str(users)], capture_output=True, text=True,
                         timeout=RUN_S)
    assert bad.returncode == 2 and str(users) in bad.stderr and "Traceback" not in bad.stderr


def test_review_command_errors_are_clear(tmp_path):
    missing = subprocess.run(CLI + ["review", "--users", str(tmp_path / "none.json"), "--store",
                                    f"sqlite:///{tmp_path}/p.db"], capture_output=True, text=True, timeout=RUN_S)
    assert missing.returncode == 2 and "none.json: no such users file" in missing.stderr
    users = tmp_path / "users.json"
    subprocess.run(CLI + ["review-user", "add", "a", "--users", str(users)], check=True, capture_output=True,
                   timeout=RUN_S)
    no_labels = subprocess.run(CLI + ["review", "--users", str(users), "--model", str(tmp_path / "m")],
                               capture_output=True, text=True, timeout=RUN_S)
    assert no_labels.returncode == 2 and "classes.txt: no label list" in no_labels.stderr


def test_review_command_serves_the_tool(tmp_path):
    users = tmp_path / "users.json"
    token = subprocess.run(CLI + ["review-user", "add", "admin1", "--role", "admin", "--users", str(users)],
                           capture_output=True, text=True, check=True, timeout=RUN_S).stdout.strip().splitlines()[-1]
    port = free_port()
    proc = subprocess.Popen(CLI + ["review", "--port", str(port), "--users", str(users), "--store",
                                   f"sqlite:///{tmp_path}/p.db", "--model", "models/demo", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):  # until it listens (bounded by count, not a wall-clock limit)
            try:
                httpx.get(url + "/healthz")
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.1)
        me = httpx.get(url + "/api/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert me["role"] == "admin" and me["labels"][0] == "moving_left"
        assert httpx.get(url + "/api/queue").status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=60)
