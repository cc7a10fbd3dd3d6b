"""Runtimes: what executes a model directory's network. Both return ``(logits, features)`` for
an ``(N, 3, T, H, W)`` float32 batch; ``features`` is the input of the final classifier layer.

- ``mxnet``: the exported MXNet graph, hybridized (static alloc/shape), fp32 — the reference,
  and the one that runs on a GPU.
- ``torch``: the same graph interpreted into PyTorch (``inference.mxgraph``), channels-last 3D,
  in ``fp32`` or ``bf16`` (weights and activations in bfloat16: oneDNN runs the convolutions
  on AMX tiles where the CPU has them), or ``int8``: the calibrated module ``clipwatch
  quantize`` saved in the model directory (``inference.quantize``). Measured on this 2-core
  AMX machine for I3D-R50 32×224²: see README "Speed".
- ``openvino``: the same interpreted graph compiled by OpenVINO, fp32 or bf16 (selectable; the
  faster one for DeepMind's Kinetics I3D here, README "Kinetics-400").

A model card's ``tie_margin`` wraps a bf16/int8 runtime in ``TieChecked``: clips whose two best
classes are that close are re-run in fp32.

``auto`` picks the fastest correct one: torch int8 where the model directory has a module whose
top-1 agreement with fp32 was measured ≥ 99% and the CPU has VNNI/AMX-INT8; else torch bf16 on
a CPU with native bf16 (AMX or AVX512-BF16; predictions agree with MXNet fp32 on ≥ 99% of
clips, benchmarks/endpoint.py checks), torch fp32 on other CPUs; MXNet on a GPU. An endpoint
then learns the rest while serving (``inference.auto_int8``): OpenVINO instead of torch where
it measures faster on this network and CPU, and int8 where it agrees.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from clipwatch.errors import ModelUnavailable

RUNTIMES = ("auto", "mxnet", "torch", "openvino")
PRECISIONS = ("auto", "fp32", "bf16", "int8")


class Runtime:
    name = "?"
    precision = "fp32"
    device = "cpu"

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# MXNet
# ---------------------------------------------------------------------------------------------

class MXNetRuntime(Runtime):
    """The exported graph with a second output: the final FullyConnected layer's input."""

    name = "mxnet"

    def __init__(self, model_dir: Path, ctx=None):
        import mxnet as mx

        from .mxgraph import dense_input_name

        self.ctx = ctx or pick_mxnet_context()
        self.device = "gpu" if self.ctx.device_type == "gpu" else "cpu"
        try:
            symbol = mx.sym.load(str(model_dir / "model-symbol.json"))
            feature_node = dense_input_name(json.loads(symbol.tojson()))
            outputs = [symbol]
            if feature_node is not None:
                # flattened in numpy: mx.sym.flatten here fails in MXNet 1.9.1's oneDNN
                # ("could not create a primitive descriptor for a reorder primitive")
                outputs.append(symbol.get_internals()[feature_node + "_output"])
            net = mx.gluon.SymbolBlock(mx.sym.Group(outputs) if len(outputs) > 1 else symbol,
                                       mx.sym.var("data"))
            net.collect_params().load(str(model_dir / "model-0000.params"), ctx=self.ctx,
                                      ignore_extra=True, allow_missing=False)
        except Exception as exc:
            raise ModelUnavailable(f"cannot load the network in {model_dir}: {exc}") from None
        net.hybridize(static_alloc=True, static_shape=True)
        self.net, self.has_features = net, feature_node is not None

    def forward(self, batch):
        import mxnet as mx

        out = self.net(mx.nd.array(batch, ctx=self.ctx, dtype=np.float32))
        if not self.has_features:
            logits = out.asnumpy()
            return logits, logits
        features = out[1].asnumpy()
        return out[0].asnumpy(), features.reshape(len(features), -1)


def pick_mxnet_context():
    """A GPU when one is present (cloud endpoints run on ml.g4dn/g5), the CPU otherwise."""
    import mxnet as mx

    return mx.gpu(0) if mx.context.num_gpus() > 0 else mx.cpu()


# ---------------------------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------------------------

def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 convolutions then run faster than fp32 ones; without them
    oneDNN emulates bf16 and it is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("amx_bf16", "avx512_bf16"))


_torch_threads_set = threading.Lock()


def _set_torch_threads() -> None:
    import torch

    with _torch_threads_set:
        # Both cores for one forward: requests are serialized (and batched) in front of it.
        wanted = int(os.environ.get("CLIPWATCH_TORCH_THREADS", os.cpu_count() or 1))
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(self, model_dir: Path, precision: str = "bf16", module=None):
        """``module``: the network already built (a freshly calibrated int8 one), instead of
        loading it from ``model_dir``."""
        import torch

        from . import quantize
        from .mxgraph import load_graph

        if precision not in ("fp32", "bf16", "int8"):
            raise ValueError(f"torch precision must be fp32, bf16 or int8, not {precision!r}")
        _set_torch_threads()
        self.precision = precision
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        if module is not None:
            self.module = module
        elif precision == "int8":
            self.module = quantize.load(model_dir)  # takes float32 NCTHW, quantizes inside
        else:
            module = load_graph(model_dir)
            self.module = module.to(self.dtype).to(memory_format=torch.channels_last_3d)
        self._torch = torch

    def forward(self, batch):
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if x.dim() == 5 and self.precision != "int8":
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode():
            logits, features = self.module(x.to(self.dtype))
            return logits.float().numpy(), features.float().numpy()


# ---------------------------------------------------------------------------------------------
# OpenVINO
# ---------------------------------------------------------------------------------------------

class OpenVINORuntime(Runtime):
    """The same interpreted graph (``inference.mxgraph``), compiled by OpenVINO for this CPU:
    it fuses each convolution with its ReLU, writes concatenated branches in place and runs
    bf16 on AMX (``INFERENCE_PRECISION_HINT``), fp32 elsewhere. DeepMind's Kinetics I3D at
    32×224², batch 1, measured here: 262 ms bf16 against PyTorch's 330 ms, 485 ms fp32 against
    917 ms. Compiled models are cached under ``$CLIPWATCH_CACHE/openvino``."""

    name = "openvino"

    def __init__(self, model_dir: Path, precision: str, input_shape: tuple[int, ...]):
        """``input_shape``: (1, 3, T, H, W) of the model card's clip; any batch size is served."""
        import openvino as ov
        import torch

        from clipwatch.registry import cache_home

        from .mxgraph import load_graph

        if precision not in ("fp32", "bf16"):
            raise ValueError(f"openvino precision must be fp32 or bf16, not {precision!r}")
        self.precision = precision
        shape = tuple(input_shape)
        core = ov.Core()
        cache = cache_home() / "openvino"
        core.set_property({"CACHE_DIR": str(cache)})
        # The converted graph is kept by the weights' and input's hash: converting takes ~15 s.
        ir = cache / f"{files_hash(model_dir, shape)}.xml"
        if ir.is_file():
            model = core.read_model(str(ir))
        else:
            with torch.no_grad():
                model = ov.convert_model(load_graph(model_dir), example_input=torch.zeros(shape),
                                         input=[ov.PartialShape([-1, *shape[1:]])])
            cache.mkdir(parents=True, exist_ok=True)
            tmp = ir.with_name(f".{ir.stem}.{os.getpid()}.xml")
            ov.save_model(model, str(tmp), compress_to_fp16=False)
            tmp.with_suffix(".bin").replace(ir.with_suffix(".bin"))
            tmp.replace(ir)
        threads = int(os.environ.get("CLIPWATCH_TORCH_THREADS", os.cpu_count() or 1))
        self.compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
        self.request = self.compiled.create_infer_request()

    def forward(self, batch):
        out = self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        logits, features = out[self.compiled.output(0)], out[self.compiled.output(1)]
        return np.asarray(logits, np.float32), np.asarray(features, np.float32).reshape(len(batch), -1)


def files_hash(model_dir: Path, salt: tuple) -> str:
    """A model directory's graph and weights, and ``salt`` (what else the cached thing was made
    for): the key of what is built from them and kept (OpenVINO IR, learnt int8 modules)."""
    import hashlib

    digest = hashlib.sha256(repr(salt).encode())
    for name in ("model-symbol.json", "model-0000.params"):
        with open(Path(model_dir) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:32]


class TieChecked(Runtime):
    """A bf16/int8 runtime whose close calls are settled in fp32.

    Low precision moves logits a little (bf16 on DeepMind's Kinetics I3D: up to ~0.25 on real
    footage), which only changes the top-1 where the two best classes are closer than that:
    with 400 classes and footage that shows none of them well, 1 clip in 28 flipped (README
    "Kinetics-400"). Where the top-2 gap is under ``margin`` logits the clip is run again in
    fp32; elsewhere the fast answer is provably the fp32 one as long as no logit moved by more
    than ``margin / 2``."""

    def __init__(self, fast: Runtime, exact: Runtime, margin: float):
        self.fast, self.exact, self.margin = fast, exact, margin
        self.name, self.precision, self.device = fast.name, fast.precision, fast.device

    def forward(self, batch):
        from clipwatch import metrics

        logits, features = self.fast.forward(batch)
        if logits.shape[1] < 2:
            return logits, features
        top2 = np.sort(logits, axis=1)[:, -2:]
        close = np.flatnonzero(top2[:, 1] - top2[:, 0] < self.margin)
        if len(close):
            metrics.TIE_RECHECKS.inc(len(close))
            exact_logits, exact_features = self.exact.forward(batch[close])
            logits, features = logits.copy(), features.copy()
            logits[close], features[close] = exact_logits, exact_features
        return logits, features


# ---------------------------------------------------------------------------------------------

def resolve(runtime: str = "auto", precision: str = "auto", gpu: bool = False) -> tuple[str, str]:
    """``auto`` → a concrete (runtime, precision)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if runtime == "auto":
        runtime = "mxnet" if gpu or not importable("torch") else "torch"
    if runtime == "openvino":
        if precision == "int8":
            raise ValueError("the openvino runtime serves fp32 or bf16")
        return runtime, ("bf16" if cpu_has_native_bf16() else "fp32") if precision == "auto" else precision
    if runtime == "mxnet":
        if precision not in ("auto", "fp32"):
            raise ValueError(f"the mxnet runtime serves fp32 only (its bf16 is slower than fp32 "
                             f"on this CPU), not {precision!r}")
        return "mxnet", "fp32"
    if precision == "auto":
        precision = "bf16" if cpu_has_native_bf16() else "fp32"
    return runtime, precision


def _nvidia_device_present() -> bool:
    """Asked before importing MXNet at all: a CPU-only endpoint on torch never loads it
    (~150 MB less resident memory, and one OpenMP runtime instead of two)."""
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia").exists()


def importable(module: str) -> bool:
    """Whether an optional runtime's package is installed (importing it, as using it would)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def load_runtime(model_dir: Path, runtime: str = "auto", precision: str = "auto",
                 ctx=None, tie_margin: float = 0.0,
                 input_shape: tuple[int, ...] | None = None) -> Runtime:
    """``tie_margin`` > 0: bf16/int8 close calls are settled in fp32 (``TieChecked``);
    ``input_shape``: the model card's clip, which OpenVINO converts the graph for."""
    gpu = ctx is not None and getattr(ctx, "device_type", "cpu") == "gpu"
    if runtime == "auto" and ctx is None and _nvidia_device_present():
        gpu = pick_mxnet_context().device_type == "gpu"
    if precision == "auto" and runtime in ("auto", "torch") and not gpu:
        from . import quantize

        if quantize.ready(model_dir):
            precision = "int8"
    runtime, precision = resolve(runtime, precision, gpu)
    if runtime == "mxnet":
        return MXNetRuntime(model_dir, ctx)
    if runtime == "openvino":
        if input_shape is None:
            raise ValueError("the openvino runtime converts the graph for one clip shape: "
                             "pass input_shape")

        def make(p: str) -> Runtime:
            return OpenVINORuntime(model_dir, p, input_shape)
    else:
        def make(p: str) -> Runtime:
            return TorchRuntime(model_dir, p)
    fast = make(precision)
    if tie_margin > 0 and precision != "fp32":
        return TieChecked(fast, make("fp32"), tie_margin)
    return fast
