"""infra/ passes a security scanner: checkov (its own venv, installed by `make test` from
infra/checkov.requirements) finds no failed check in the CloudFormation stack or the serving
image's Dockerfile, and every check skipped is skipped inline with the reason."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def test_checkov_finds_nothing_failed_and_every_skip_says_why():
    assert CHECKOV.is_file(), f"{CHECKOV} is missing: `make test` installs it (infra/checkov.requirements)"
    # Relative to the checkout, as a developer runs it (given an absolute /tmp/… path, its
    # secrets check reads the Lambda's two plain environment values differently).
    proc = subprocess.run([str(CHECKOV), "-d", "infra", "--skip-download",
                           "--output", "json"], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT / ".venv-checkov"),
                               "BC_SKIP_MAPPING": "TRUE"})
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    by_kind = {r["check_type"]: r for r in reports}
    assert {"cloudformation", "dockerfile"} <= set(by_kind), list(by_kind)
    failed = [(r["check_type"], c["check_id"], c["resource"]) for r in reports for c in r["results"]["failed_checks"]]
    assert not failed, failed
    assert by_kind["cloudformation"]["summary"]["passed"] >= 35
    skipped = [c for r in reports for c in r["results"]["skipped_checks"]]
    assert len(skipped) == by_kind["cloudformation"]["summary"]["skipped"] >= 10
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason) > 40, (check["check_id"], check["resource"], reason)


def test_the_image_runs_as_a_user_and_checks_its_own_ping():
    text = re.sub(r"\\\n", " ", (ROOT / "infra" / "docker" / "Dockerfile").read_text())
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    health = re.search(r"^HEALTHCHECK .*CMD (.+)$", text, re.M)
    assert health and "http://127.0.0.1:8080/ping" in health.group(1)
