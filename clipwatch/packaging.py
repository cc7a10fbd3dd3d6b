"""The three artifacts an AWS deployment takes, built from this checkout: the model archive
(``ModelDataUrl``), the trigger Lambda's zip (``LambdaCodeBucket``/``LambdaCodeKey``) and the
serving image's Docker build context (``ImageUri``, after ``docker build`` and a push to ECR).

Each is built from the files the running code is, never from a copy kept beside it: the image
context takes exactly what ``infra/docker/Dockerfile`` COPYs, so the Dockerfile stays the one
list of what the image holds.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
# The Lambda runs `inference.lambda_handler.handler` on the Python runtime, which brings boto3:
# the handler imports nothing else of the project (tests/test_lambda.py checks it).
LAMBDA_FILES = ("inference/__init__.py", "inference/lambda_handler.py")
HANDLER = "inference.lambda_handler.handler"
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def model_archive(model: str, out: Path) -> Path:
    """``model.tar.gz`` of a model directory or a fetched catalogue model (``kinetics400``)."""
    from inference.catalogue import resolve
    from inference.model_archive import write_model_archive

    path = Path(model)
    if not path.is_dir():
        fetched = resolve(model)
        if fetched is None:
            raise FileNotFoundError(f"no model directory at {path} and no catalogue model {model!r} "
                                    "(clipwatch model list)")
        path = fetched
    return write_model_archive(path, out)


def lambda_zip(out: Path) -> Path:
    """The trigger Lambda's deployment package: the handler module and its package marker."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
        for name in LAMBDA_FILES:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # same code, same zip bytes
            info.external_attr = 0o644 << 16
            z.writestr(info, (ROOT / name).read_bytes(), zipfile.ZIP_DEFLATED)
    partial.replace(out)
    return out


def dockerfile_sources(dockerfile: Path = DOCKERFILE) -> list[str]:
    """What the Dockerfile COPYs from the build context (its COPY lines' sources)."""
    sources: list[str] = []
    for line in dockerfile.read_text().splitlines():
        match = re.match(r"\s*COPY\s+(?!--from)(.+)$", line)
        if match:
            parts = [p for p in match.group(1).split() if not p.startswith("--")]
            sources += parts[:-1]
    return sources


def image_context(out: Path) -> Path:
    """A Docker build context for the serving image: the Dockerfile at its root and exactly
    the files it COPYs. ``docker build -t IMAGE OUT``."""
    out = Path(out)
    if out.exists():
        if not (out / "Dockerfile").is_file():
            raise FileExistsError(f"{out} exists and is not a build context this command wrote; "
                                  "give a new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy2(DOCKERFILE, out / "Dockerfile")
    for source in dockerfile_sources():
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, out / source, ignore=_SKIP)
        elif src.is_file():
            shutil.copy2(src, out / source)
        else:
            raise FileNotFoundError(f"{DOCKERFILE}: COPY {source}: not in the checkout")
    return out
