"""int8: post-training static quantization of a model directory's network, for CPUs with int8
dot-product instructions (AVX512-VNNI, AMX-INT8).

The model directory's MXNet graph is interpreted into PyTorch (``inference.mxgraph``), observed
on real clips, converted by torch.ao's FX quantization for the oneDNN engine, traced and saved
as TorchScript next to the graph (``model-int8.pt``). Its record in ``model.json`` (``int8``)
says what it was calibrated on and how often its top-1 agreed with the fp32 network on clips it
was not calibrated on; ``auto`` serves it only when that reached ``MIN_AGREEMENT``.

Two choices, each measured on the demo model (top-1 agreement with fp32, 210 held-out clips):

- The first convolution (3 input channels: little int8 gain, and it would quantize the pixels
  themselves) and the final classifier (its rounding lands on the logits) stay fp32: 97.6% →
  99.5%, largest logit error 26 → 2.7 (it costs I3D-R50 ~10 ms of ~290).
- Activations keep their whole min–max range (weights: per channel). torch's default
  histogram observer clips rare large values to fit the common ones better, but a network
  ending in a global max pool (``i3d_tiny``) decides on exactly those: 98.1% → 100%, largest
  logit error 10.7 → 1.2.

Measured here (2-core AMX machine, I3D-R50 32×224², batch 1): oneDNN int8 1.4–1.7× faster than
bf16 across runs (the x86/fbgemm engine: ~1.36×); README "Speed".
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
from pydantic import BaseModel

INT8_FILE = "model-int8.pt"
ENGINE = "onednn"
MIN_AGREEMENT = 0.99


class Int8Record(BaseModel):
    """``model.json``'s ``int8`` entry."""

    file: str = INT8_FILE
    engine: str = ENGINE
    calibration_clips: int
    calibration_data: str = ""
    checked_clips: int  # held-out clips compared with fp32
    agreement: float  # top-1 agreement with fp32 on them
    created_at: str = ""


def cpu_has_int8_dot_product() -> bool:
    """VNNI or AMX-INT8: without them oneDNN's int8 convolutions are no faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def _use_engine() -> None:
    import torch

    torch.backends.quantized.engine = ENGINE


def quantize(model_dir: Path, calibration: Iterable[np.ndarray], lock=None):
    """The model directory's network, int8, observed on ``calibration`` batches of
    (N, 3, T, H, W) float32 (normalized as served): a traced TorchScript module returning
    (logits, features) like the fp32 one. ``lock``: held around each forward (an endpoint's
    model lock, when it calibrates while serving)."""
    import torch
    from torch.ao.quantization import (MinMaxObserver, PerChannelMinMaxObserver, QConfig,
                                       get_default_qconfig_mapping)
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from .mxgraph import load_graph

    _use_engine()
    graph = load_graph(Path(model_dir)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its default's VNNI notice: the global config replaces it
        defaults = get_default_qconfig_mapping(ENGINE)
    qconfig = defaults.set_global(QConfig(
        # 7-bit activations without VNNI: AVX2's u8×s8 pair sums saturate int16 otherwise
        activation=MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=not cpu_has_int8_dot_product()),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)))
    for name in _kept_in_fp32(graph):
        qconfig = qconfig.set_module_name(name, None)
    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise ValueError("int8 calibration needs at least one batch of clips")
    lock = lock if lock is not None else contextlib.nullcontext()
    example = torch.from_numpy(np.ascontiguousarray(first, dtype=np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        with lock:  # FX tracing patches every nn.Module's __call__ while it runs, in every thread
            prepared = prepare_fx(graph, qconfig, example_inputs=(example,))
        with torch.inference_mode():
            for batch in itertools.chain([first], batches):
                with lock:
                    prepared(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        with torch.inference_mode(), lock:
            converted = convert_fx(prepared)
            return torch.jit.freeze(torch.jit.trace(converted, example[:1]).eval())


def _kept_in_fp32(graph) -> list[str]:
    """The first convolution and the last fully connected layer."""
    import torch

    convs = [n for n, m in graph.named_modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.Conv2d))]
    denses = [n for n, m in graph.named_modules() if isinstance(m, torch.nn.Linear)]
    return convs[:1] + denses[-1:]


def save(module, model_dir: Path, record: Int8Record) -> Path:
    """Write ``model-int8.pt`` and record it in ``model.json`` (edited as JSON, so this module
    needs nothing of ``inference.model``, which imports it; a seed directory without a card
    gets one holding its version and the record)."""
    import json

    import torch

    model_dir = Path(model_dir)
    path = model_dir / record.file
    torch.jit.save(module, str(path))
    card_file = model_dir / "model.json"
    card = json.loads(card_file.read_text()) if card_file.is_file() else {"version": f"{model_dir.name}-seed"}
    card["int8"] = record.model_dump(mode="json")
    card_file.write_text(json.dumps(card, indent=2) + "\n")
    return path


def ready(model_dir: Path) -> bool:
    """Serve int8 when ``precision`` is auto: the directory has a module whose agreement with
    fp32 was measured at ``MIN_AGREEMENT`` or better, and the CPU has int8 dot products."""
    import json

    card_file = Path(model_dir) / "model.json"
    try:
        record = json.loads(card_file.read_text()).get("int8") if card_file.is_file() else None
    except ValueError:
        return False
    return bool(record) and (Path(model_dir) / record.get("file", INT8_FILE)).is_file() \
        and record.get("agreement", 0.0) >= MIN_AGREEMENT and cpu_has_int8_dot_product()


def load(model_dir: Path):
    """The saved int8 module."""
    import torch

    from clipwatch.errors import ModelUnavailable

    path = Path(model_dir) / INT8_FILE
    if not path.is_file():
        raise ModelUnavailable(f"{model_dir} has no {INT8_FILE}: make it with "
                               f"`clipwatch quantize --model {model_dir} --data DATASET`")
    _use_engine()
    return torch.jit.load(str(path)).eval()


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1))) if len(a) else 0.0
