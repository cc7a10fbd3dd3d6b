"""The I3D classifier: the model directory contract, loading (directory or GluonCV model zoo),
device choice, and the forward pass.

Model directory (also the SageMaker ``model.tar.gz`` layout, compatible with the seed):
``model-symbol.json`` + ``model-0000.params`` (an exported hybridized Gluon network),
``classes.txt`` (one class a line) and ``model.json`` (the ModelCard below).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from clipwatch.errors import ModelUnavailable
from clipwatch.records import utc_now

from . import catalogue, deployment
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .quantize import Int8Record
from .routing import RoutingCard
from .runtime import Runtime, load_runtime
from .sampling import ClipSampler
from .signals import ReferenceBank, ReferenceError

log = logging.getLogger("clipwatch.model")

DEFAULT_MODEL_DIR = "/opt/ml/model"  # where SageMaker unpacks model.tar.gz
ZOO_CACHE = Path(os.environ.get("MXNET_HOME", Path.home() / ".mxnet")) / "models"


class InputSpec(BaseModel):
    frames: int = 32
    stride: int = 2
    # (width, height) frames are scaled to, as GluonCV's loader does; or one number: the short
    # side, the aspect ratio kept (DeepMind's I3D contract)
    resize: tuple[int, int] | int = (340, 256)
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # the frame rate ``stride`` was learned at: faster streams are sampled with a longer stride
    # (inference.sampling); None keeps the stride whatever the stream's rate
    fps: float | None = None

    def clip_shape(self, batch: int = 1) -> tuple[int, int, int, int, int]:
        """(N, 3, T, H, W) of a batch of this model's clips."""
        return (batch, 3, self.frames, self.crop, self.crop)

    def sampler(self, clips: int = 1, snap_to_keyframe: bool = True) -> ClipSampler:
        return ClipSampler(self.frames, self.stride, clips, snap_to_keyframe, self.fps)


class ModelCard(BaseModel):
    """``model.json``: what a model expects and how it was made."""

    architecture: str = "i3d_resnet50_v1_custom"
    version: str
    input: InputSpec = Field(default_factory=InputSpec)
    temperature: float = 1.0  # divides the logits; fitted on validation data (calibration)
    created_at: str = Field(default_factory=utc_now)
    metrics: dict = Field(default_factory=dict)
    notes: str = ""
    int8: Int8Record | None = None  # a calibrated int8 module beside the graph (inference.quantize)
    provenance: dict = Field(default_factory=dict)  # where published weights came from (catalogue)
    # bf16/int8 top-2 logit gaps under this are settled in fp32 (inference.runtime.TieChecked)
    tie_margin: float = 0.0
    # the fitted review score and its operating point (inference.routing); None: thresholds
    routing: RoutingCard | None = None


def pick_context():
    """A GPU when one is present (cloud endpoints run on ml.g4dn/g5), the CPU otherwise."""
    from .runtime import pick_mxnet_context

    return pick_mxnet_context()


class Classifier:
    """A loaded network (on one of ``inference.runtime``'s runtimes) and its card. Forwards are
    serialized: an MXNet executor is not safe to run from two threads at once, and on a 2-core
    CPU a second concurrent forward would only slow the first (concurrent requests are batched
    in front of it instead, see ``inference.batching``)."""

    def __init__(self, runtime: Runtime, card: ModelCard, classes: list[str],
                 reference: ReferenceBank | None = None, directory: Path | None = None,
                 runtime_requested: str = "auto", precision_requested: str = "auto"):
        self.runtime, self.card, self.classes = runtime, card, classes
        self.reference = reference  # embeddings of its training clips (inference.signals)
        self.directory = directory
        # "auto" both: the endpoint may move it to a faster runtime or to int8 by itself
        # (inference.auto_int8)
        self.runtime_requested, self.precision_requested = runtime_requested, precision_requested
        self._lock = threading.Lock()

    @property
    def routing(self) -> RoutingCard | None:
        """The review score to serve: the card's, when the reference bank its novelty signals
        were fitted with is here too; None: the fallback thresholds."""
        return self.card.routing if self.reference is not None else None

    @property
    def routing_status(self) -> str:
        """How this model's predictions are routed to review, for /ping and the log."""
        if (r := self.routing) is not None:
            return (f"fitted review score, auto-accepted error <= {r.alpha:.0%} at "
                    f"{1 - r.delta:.0%} confidence")
        if self.card.routing is not None:
            return "fallback thresholds: the routing card needs the reference bank, which is missing"
        return ("fallback thresholds: no operating point in model.json "
                "(clipwatch evaluate --routing fits one)")

    @property
    def device(self) -> str:
        return self.runtime.device

    @property
    def backend(self) -> str:
        """e.g. ``torch-bf16``, ``mxnet-fp32``: what /ping and the metrics report."""
        return f"{self.runtime.name}-{self.runtime.precision}"

    @property
    def info(self) -> dict[str, str]:
        """``clipwatch_model_info``'s labels."""
        return {"version": self.card.version, "architecture": self.card.architecture,
                "device": self.device, "backend": self.backend, "classes": str(len(self.classes))}

    def exclusive(self) -> threading.Lock:
        """Held by every forward: another forward (a calibration's) taking it interleaves with
        the served ones instead of sharing the cores with them."""
        return self._lock

    def use(self, runtime: Runtime) -> None:
        """Serve the next forwards on ``runtime`` (the one in hand finishes on the old)."""
        with self._lock:
            self.runtime = runtime

    def runtime_like(self, int8_module) -> Runtime:
        """``int8_module`` (``inference.quantize``) as this model's runtime: close calls
        settled in fp32 like the runtime it replaces (``TieChecked``)."""
        from .runtime import TieChecked, TorchRuntime

        fast = TorchRuntime(self.directory, "int8", module=int8_module)
        if self.card.tie_margin <= 0:
            return fast
        # with a tie margin, what serves is fp32 itself or already TieChecked (load_runtime)
        current = self.runtime
        return TieChecked(fast, current.exact if isinstance(current, TieChecked) else current,
                          self.card.tie_margin)

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, T, H, W) float32 → logits (N, classes) and features (N, D) float32; the
        features are the input of the final classifier layer."""
        with self._lock:
            return self.runtime.forward(batch)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, T, H, W) float32 → (N, classes) float32."""
        return self.infer(batch)[0]

    def warm_up(self, batch_size: int = 1) -> None:
        """One forward at start-up, so the first request does not pay for graph allocation."""
        self.logits(np.zeros(self.card.input.clip_shape(batch_size), np.float32))


def load_classifier(source: str | Path = DEFAULT_MODEL_DIR, ctx=None,
                    cache_dir: Path | None = None, runtime: str = "auto",
                    precision: str = "auto") -> Classifier:
    """From a model directory, a catalogue name (``kinetics400``, once fetched:
    ``inference.catalogue``), or a GluonCV model-zoo name (e.g. ``i3d_resnet50_v1_kinetics400``),
    downloading its pretrained weights on first use.

    A deployment (``inference.deployment``) loads the model its ``current`` points to.

    ``runtime`` (auto | mxnet | torch) and ``precision`` (auto | fp32 | bf16): see
    ``inference.runtime``; ``auto`` is the fastest correct choice on this machine."""
    path = deployment.current(source) or Path(source)
    if path.is_dir():
        return _load_dir(path, ctx, runtime, precision)
    fetched = catalogue.resolve(source)
    if fetched is not None:
        return _load_dir(fetched, ctx, runtime, precision)
    if str(source).startswith(("i3d_", "slowfast_", "r2plus1d_", "tpn_")):
        return _load_zoo(str(source), ctx, cache_dir or ZOO_CACHE, runtime, precision)
    raise ModelUnavailable(
        f"no model directory at {path} (expected model-symbol.json, model-0000.params, "
        f"classes.txt, model.json), not a catalogue name ({', '.join(catalogue.CATALOGUE)}) and "
        "not a GluonCV video model-zoo name")


def _load_dir(path: Path, ctx, runtime: str = "auto", precision: str = "auto") -> Classifier:
    missing = [f for f in ("model-symbol.json", "model-0000.params", "classes.txt")
               if not (path / f).is_file()]
    if missing:
        raise ModelUnavailable(f"model directory {path} lacks {', '.join(missing)}")
    classes = [c.strip() for c in (path / "classes.txt").read_text().splitlines() if c.strip()]
    card_file = path / "model.json"
    # A seed model directory has no model.json: its spec is the GluonCV I3D default.
    card = (ModelCard.model_validate_json(card_file.read_text()) if card_file.is_file()
            else ModelCard(version=f"{path.name}-seed"))
    try:
        net = load_runtime(path, runtime, precision, ctx, tie_margin=card.tie_margin,
                           input_shape=card.input.clip_shape())
    except ValueError as exc:  # an unknown runtime/precision name
        raise ModelUnavailable(str(exc)) from None
    try:
        reference = ReferenceBank.load(path, card.version)
    except ReferenceError as exc:  # serve without novelty rather than not at all
        log.warning("%s; serving without novelty signals", exc)
        reference = None
    return Classifier(net, card, classes, reference, path, runtime_requested=runtime,
                      precision_requested=precision)


def zoo_network(name: str, ctx, cache_dir: Path = ZOO_CACHE):
    """A GluonCV model-zoo network with its pretrained weights, downloaded into ``cache_dir`` on
    first use; without network or file, the error says where the weights must go."""
    from .gluoncv_compat import import_gluoncv

    import_gluoncv()
    from gluoncv.model_zoo import get_model

    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        return get_model(name, pretrained=True, root=str(cache_dir), ctx=ctx)
    except ValueError as exc:
        raise ModelUnavailable(f"unknown GluonCV model {name!r}: {exc}") from None
    except Exception as exc:  # no network, no file: say where the weights must go
        raise ModelUnavailable(
            f"could not download the pretrained weights of {name} into {cache_dir} ({exc}); "
            f"put the .params file there, or use a model directory") from None


def _load_zoo(name: str, ctx, cache_dir: Path, runtime: str = "auto",
              precision: str = "auto") -> Classifier:
    """The zoo network is exported once into a model directory under ``cache_dir``, so every
    runtime (including PyTorch) serves it the same way as any other model directory."""
    import mxnet as mx

    exported = cache_dir / f"{name}-model"
    if not (exported / "model-0000.params").is_file():
        net = zoo_network(name, mx.cpu(), cache_dir)
        classes = list(getattr(net, "classes", [])) or [str(i) for i in range(_num_outputs(net))]
        save_model_dir(net, exported, classes, ModelCard(architecture=name, version=name))
    return _load_dir(exported, ctx, runtime, precision)


def _num_outputs(net) -> int:
    import mxnet as mx

    return net(mx.nd.zeros(InputSpec().clip_shape())).shape[1]


def build_i3d(num_classes: int, spec: InputSpec | None = None, ctx=None, seed: int = 0):
    """A GluonCV I3D-ResNet50 with freshly initialized weights (no download): the base for
    fine-tuning and the network of the tests' tiny random-weight models."""
    import mxnet as mx

    from .gluoncv_compat import import_gluoncv

    import_gluoncv()
    from gluoncv.model_zoo import get_model

    mx.random.seed(seed)
    net = get_model("i3d_resnet50_v1_custom", nclass=num_classes, pretrained=False,
                    pretrained_base=False, use_kinetics_pretrain=False,
                    num_segments=1, num_crop=1, ctx=ctx or mx.cpu())
    net.initialize(mx.init.Xavier(), ctx=ctx or mx.cpu(), force_reinit=True)
    return net


def save_model_dir(net, out: str | Path, classes: list[str], card: ModelCard,
                   ctx=None) -> Path:
    """Export a Gluon network into the model directory layout."""
    import mxnet as mx

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net.hybridize()
    net(mx.nd.zeros(card.input.clip_shape(), ctx=ctx or mx.cpu()))  # trace the graph
    net.export(str(out / "model"), epoch=0)
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    (out / "model.json").write_text(card.model_dump_json(indent=2) + "\n")
    return out

