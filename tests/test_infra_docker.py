"""The serving container cannot be built here (no Docker engine), so its Dockerfile is checked
against the code: SageMaker's `docker run IMAGE serve` must become `clipwatch serve` with the
container contract's defaults, every COPY source must exist, and the image must install what
the serving path imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def one(name: str) -> str:
    found = [rest for word, rest in instructions() if word == name]
    assert len(found) == 1, (name, found)
    return found[0]


def test_sagemaker_serve_convention_runs_clipwatch_serve_with_the_contract_defaults(monkeypatch):
    assert json.loads(one("ENTRYPOINT")) == ["clipwatch"]
    assert json.loads(one("CMD")) == ["serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["clipwatch"] == "clipwatch.cli:main"
    for var in ("SM_MODEL_DIR", "SAGEMAKER_BIND_TO_PORT"):
        monkeypatch.delenv(var, raising=False)
    import importlib

    import clipwatch.commands.serving as serving

    importlib.reload(serving)  # its defaults read the environment at import
    from clipwatch.cli import parser

    args = parser().parse_args(["serve"])
    assert (args.model, args.port, args.host) == ("/opt/ml/model", 8080, "0.0.0.0")
    assert one("EXPOSE") == str(args.port)


def test_cuda_base_and_pins_match_the_project():
    base = one("FROM")
    assert re.fullmatch(r"nvidia/cuda:11\.2\.\d+-cudnn8-runtime-ubuntu\d+\.\d+", base), base
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "mxnet==1.9.1" in project["dependencies"]
    run = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert "mxnet-cu112==1.9.1" in run and "pip uninstall -y mxnet" in run
    assert "-c requirements.lock ." in run  # the runtime deps at the locked versions
    assert re.search(r"python3\.11\b", run) and project["requires-python"].startswith(">=3.11")


def test_copy_sources_exist_and_the_context_ignore_keeps_them():
    copies = [rest.split() for word, rest in instructions() if word == "COPY"]
    sources = [src for parts in copies for src in parts[:-1]]
    assert {"clipwatch/", "inference/", "pyproject.toml", "requirements.lock"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), src
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*"
    for src in sources:
        assert f"!{src}" in ignore, src


def _dependency_closure() -> set[str]:
    """The distributions `pip install .` puts in the image: the project's dependencies and
    theirs, recursively (no extras)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r).name for r in project["dependencies"]]
    closure = set()
    while todo:
        name = _norm(todo.pop())
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo += [r.name for r in map(Requirement, requires) if r.marker is None or r.marker.evaluate({"extra": ""})]
    return closure


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# Runs in a fresh interpreter where every installed module the image would not have is
# unimportable; then serves one real segment through the same code `clipwatch serve` runs.
SERVE_WITH_IMAGE_PACKAGES_ONLY = """
import importlib.metadata as md, json, re, sys
allowed = set(json.loads(sys.argv[1]))
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
blocked = {top for top, dists in md.packages_distributions().items()
           if not {norm(d) for d in dists} & allowed and top not in sys.stdlib_module_names}
class NotInImage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed in the image)", name=name)
sys.meta_path.insert(0, NotInImage())
import urllib.request
import uvicorn
import clipwatch.commands.serving
from clipwatch.config import Settings
from inference.server import BackgroundServer, build_app
with BackgroundServer(build_app(sys.argv[2], Settings.from_env())) as server:
    request = urllib.request.Request(f"{server.url}/invocations", data=json.dumps({"uri": sys.argv[3]}).encode(),
                                     headers={"Content-Type": "application/json"})
    body = urllib.request.urlopen(request, timeout=120).read()
print(json.dumps({"label": json.loads(body)["label"], "blocked": sorted(blocked)}))
"""


def test_the_image_installs_everything_the_serving_path_needs(tiny_model_dir, tmp_path):
    from clipwatch.testmedia import render_segment

    segment = render_segment(tmp_path / "seg_00001.ts", seconds=2, size=(320, 240))
    allowed = sorted(_dependency_closure() | {"clipwatch"})
    env = {**__import__("os").environ, "CLIPWATCH_ALLOWED_DIRS": str(tmp_path),
           "CLIPWATCH_STORE": f"sqlite:///{tmp_path / 'p.db'}"}
    proc = subprocess.run([sys.executable, "-c", SERVE_WITH_IMAGE_PACKAGES_ONLY, json.dumps(allowed),
                           str(tiny_model_dir), str(segment)], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["label"]
    assert "pytest" in out["blocked"] and "moto" in out["blocked"]  # the simulation is real
