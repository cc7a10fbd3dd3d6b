"""``model.tar.gz``: a model directory as SageMaker takes it (``ModelDataUrl``), its files at
the archive's root, which SageMaker unpacks into ``/opt/ml/model`` where ``clipwatch serve``
looks. Written by ``train``, ``evaluate`` and ``quantize`` beside the model, and by
``clipwatch package model`` for any model directory or fetched catalogue model."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Optional

from .quantize import INT8_FILE
from .signals import REFERENCE_FILE

REQUIRED = ("model-symbol.json", "model-0000.params", "classes.txt")
# a seed directory has no model.json; int8 is `quantize`'s; the reference bank `evaluate`'s (the
# routing card in model.json needs it: without it a cloud endpoint falls back to thresholds)
OPTIONAL = ("model.json", INT8_FILE, REFERENCE_FILE)


def write_model_archive(model_dir: Path, out: Optional[Path] = None) -> Path:
    """Archive ``model_dir`` into ``out`` (default ``model_dir/model.tar.gz``)."""
    model_dir = Path(model_dir)
    missing = [name for name in REQUIRED if not (model_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{model_dir} is not a model directory: no {', '.join(missing)}")
    out = Path(out) if out else model_dir / "model.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for name in REQUIRED + OPTIONAL:
            if (model_dir / name).is_file():
                tar.add(model_dir / name, arcname=name)
    partial.replace(out)  # never a half-written archive under the real name
    return out
