"""Which int8 engine should run the I3D forward pass on this CPU, and is any of them faster
than fp32 at all?

``inference.quantize`` (torch FX + oneDNN, TorchScript) was measured on a 2-core AMX machine.
Without VNNI/AMX (``inference.quantize.cpu_has_int8_dot_product()`` is False) oneDNN and
OpenVINO still have int8 kernels (AVX2 ``vpmaddubsw``), so whether int8 beats fp32 here has to
be measured, not assumed. This benchmark builds every engine for both networks we serve and
times them in one process against torch fp32:

- ``torch-fp32`` (the baseline, ``inference.runtime.TorchRuntime``) and ``ov-fp32``
  (``OpenVINORuntime``);
- ``torch-fx-onednn``: today's int8 (``inference.quantize.quantize``), and ``torch-fx-x86``:
  the same with torch's ``x86`` engine (fbgemm + oneDNN);
- ``pt2e-x86-eager`` / ``pt2e-x86-inductor``: ``torch.export`` + PT2E with
  ``X86InductorQuantizer`` (torchao; torch 2.13 no longer ships ``torch.ao...quantize_pt2e``),
  run as the converted q/dq graph and compiled by inductor (freezing on);
- ``ov-nncf-int8``: the OpenVINO model quantized by NNCF (``nncf.quantize``), compiled for the
  CPU with 2 threads, LATENCY hint;
- ``ov-pt2e-int8``: a PT2E graph whose Conv3d layers are annotated for int8 (the x86 quantizer
  only annotates conv1d/2d), converted by ``openvino.convert_model`` from the exported program.

The torch int8 engines keep the first convolution and the final classifier in fp32, as
``inference.quantize`` does; NNCF uses its defaults. Every int8 engine is calibrated on the same
8 clips; 16 other clips measure top-1 agreement with torch fp32 and the largest |logit|
difference (the I3D-R50's weights are random, so its agreement says little; DeepMind's Kinetics
I3D is run on real footage decoded and normalized exactly as the endpoint does).

Timing: per model, ``--rounds`` rounds over batch sizes × engines (engine order rotated each
round); each cell warms up 2 forwards (1 in later rounds) and times ``--repeats``; the reported
figure is the median over rounds of each round's median, with every engine's spread across
rounds and its per-round speed ratio against the baseline measured in the same round.
``pt2e-x86-eager`` (the converted q/dq reference graph) is timed at batch 1 only.
``--quick`` takes ~8 minutes for both models (building the engines dominates); narrow it with
``--models`` / ``--engines``.

    .venv/bin/python benchmarks/int8_engines.py --out benchmarks/results/int8_engines.json
    .venv/bin/python benchmarks/int8_engines.py --quick       # smoke test: batch 1, 1 round
    .venv/bin/python benchmarks/int8_engines.py --models kinetics400 --engines torch-fp32,ov-nncf-int8
"""

from __future__ import annotations

import os

os.environ.setdefault("CLIPWATCH_TORCH_THREADS", "2")

import inference  # noqa: F401,I001,E402

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from harness import build_r50_model_dir, console, progress  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / ".cache" / "benchmarks" / "int8_engines.json"  # untracked
R50_DIR = REPO / ".cache" / "benchmarks" / "r50-model"
FOOTAGE_DIR = REPO / ".cache" / "benchmarks" / "int8-footage"
THREADS = 2
MODELS = ("i3d-r50", "kinetics400")
ENGINES = ("torch-fp32", "ov-fp32", "torch-fx-onednn", "torch-fx-x86", "pt2e-x86-eager",
           "pt2e-x86-inductor", "ov-nncf-int8", "ov-pt2e-int8")
BASELINE = "torch-fp32"
KINETICS_FOOTAGE = ("segway", "basketball", "bikes", "soccer-juggling", "cartwheel", "carphone",
                    "bigbuckbunny")


# ---------------------------------------------------------------------------------------------
# clips
# ---------------------------------------------------------------------------------------------

def kinetics_clips(model_dir: Path, per_file: int) -> tuple[np.ndarray, list[str]]:
    """Real footage (clipwatch.footage), decoded and normalized as the endpoint serves it."""
    from clipwatch import footage
    from inference.decode import decode_clips
    from inference.model import ModelCard
    from inference.preprocess import normalize_clips

    spec = ModelCard.model_validate_json((model_dir / "model.json").read_text()).input
    sampler = spec.sampler(clips=per_file, snap_to_keyframe=False)
    clips, names = [], []
    for name in KINETICS_FOOTAGE:
        # as a live encoder writes it (H.264 MPEG-TS at the clip's own size): what the endpoint
        # decodes (PyAV also cannot open some of the original .avi files' metadata)
        segment = FOOTAGE_DIR / f"{name}.ts"
        if not segment.is_file():
            footage.segment(name, segment)
        frames = decode_clips(segment.read_bytes(), sampler, spec.resize).frames
        clips.append(normalize_clips(frames, spec.crop, spec.mean, spec.std))
        names += [f"{name}#{i}" for i in range(len(frames))]
    # clip i of every file, then the next i: calibration (the first ones) spreads over the files
    order = [f * per_file + i for i in range(per_file) for f in range(len(KINETICS_FOOTAGE))]
    stacked = np.concatenate(clips)
    return stacked[order], [names[i] for i in order]


def synthetic_clips(model_dir: Path, count: int) -> tuple[np.ndarray, list[str]]:
    """training.synth activities rendered at the R50's resize, sampled 32 × stride 2."""
    from inference.model import ModelCard
    from inference.preprocess import normalize_clips
    from training import synth

    spec = ModelCard.model_validate_json((model_dir / "model.json").read_text()).input
    rng = np.random.default_rng(0)
    span = (spec.frames - 1) * spec.stride + 1
    out, names = [], []
    for i in range(count):
        activity = synth.ACTIVITIES[i % len(synth.ACTIVITIES)]
        frames = synth.render_frames(activity, rng, span, size=tuple(spec.resize))
        out.append(normalize_clips(frames[None, ::spec.stride], spec.crop, spec.mean, spec.std)[0])
        names.append(f"synth:{activity}#{i}")
    return np.stack(out), names


# ---------------------------------------------------------------------------------------------
# engines
# ---------------------------------------------------------------------------------------------

class Engine:
    def __init__(self, name: str, forward, quantized_engine: str | None = None, notes: str = ""):
        self.name, self._forward, self.quantized_engine, self.notes = name, forward, quantized_engine, notes

    def forward(self, batch: np.ndarray) -> np.ndarray:
        if self.quantized_engine:
            import torch

            torch.backends.quantized.engine = self.quantized_engine
        return self._forward(np.ascontiguousarray(batch, dtype=np.float32))


def _short_error(exc: BaseException) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(tb[-3:]).strip()
    return text[-3000:]


def _torch_module_engine(name, module, quantized_engine=None, notes=""):
    import torch

    def forward(batch):
        with torch.inference_mode():
            return module(torch.from_numpy(batch))[0].float().numpy()
    return Engine(name, forward, quantized_engine, notes)


def _ov_engine(name, model, notes=""):
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": THREADS,
        "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    out0 = compiled.output(0)

    def forward(batch):
        return np.asarray(request.infer({0: batch})[out0], np.float32).copy()
    return Engine(name, forward, None, notes)


def build_torch_fp32(ctx):
    from inference.runtime import TorchRuntime

    rt = TorchRuntime(ctx["dir"], "fp32")
    return Engine(BASELINE, lambda b: rt.forward(b)[0], notes="inference.runtime.TorchRuntime fp32, channels-last 3D")


def build_ov_fp32(ctx):
    from inference.runtime import OpenVINORuntime

    rt = OpenVINORuntime(ctx["dir"], "fp32", ctx["shape"])
    return Engine("ov-fp32", lambda b: rt.forward(b)[0], notes="inference.runtime.OpenVINORuntime fp32")


def _fx(ctx, engine: str):
    from inference import quantize
    from inference.runtime import TorchRuntime

    saved = quantize.ENGINE
    quantize.ENGINE = engine  # inference.quantize reads it when called: same code, other engine
    try:
        module = quantize.quantize(ctx["dir"], ctx["calibration"])
    finally:
        quantize.ENGINE = saved
    rt = TorchRuntime(ctx["dir"], "int8", module=module)
    return Engine(f"torch-fx-{engine}", lambda b: rt.forward(b)[0], quantized_engine=engine,
                  notes=f"inference.quantize.quantize (FX, TorchScript), quantized engine {engine!r}")


def build_fx_onednn(ctx):
    return _fx(ctx, "onednn")


def build_fx_x86(ctx):
    return _fx(ctx, "x86")


def _export(module, example):
    import torch

    batch = torch.export.Dim("batch", min=1, max=16)
    # an example of batch 1 would make export specialize the batch dimension to 1
    example = example.expand(2, *example.shape[1:]).contiguous() if len(example) == 1 else example
    return torch.export.export(module, (example,), dynamic_shapes=({0: batch},))


def _count_qdq(gm) -> dict:
    """How many convolutions / linears ended up with a dequantized (int8) weight."""
    import torch

    counts = {"conv": 0, "conv_int8": 0, "linear": 0, "linear_int8": 0}
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        kind = {torch.ops.aten.conv3d.default: "conv", torch.ops.aten.conv2d.default: "conv",
                torch.ops.aten.convolution.default: "conv",
                torch.ops.aten.linear.default: "linear"}.get(node.target)
        if kind is None:
            continue
        counts[kind] += 1
        weight = node.args[1]
        while isinstance(weight, torch.fx.Node) and weight.op == "call_function" and \
                "dequantize" not in str(weight.target) and weight.args:
            weight = weight.args[0]  # through a permute / contiguous
        if isinstance(weight, torch.fx.Node) and "dequantize" in str(weight.target):
            counts[f"{kind}_int8"] += 1
    return counts


def pt2e_quantized(ctx, conv3d: bool):
    """The converted PT2E module (cached in ctx): X86InductorQuantizer as it is, or with every
    Conv3d annotated too (``conv3d``), first convolution and last linear left fp32."""
    key = f"pt2e:{conv3d}"
    if key in ctx:
        return ctx[key]
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    from inference import quantize
    from inference.mxgraph import load_graph

    graph = load_graph(ctx["dir"]).eval()
    kept = quantize._kept_in_fp32(graph)
    example = torch.from_numpy(ctx["calibration"][0])
    config = xiq.get_default_x86_inductor_quantization_config()
    quantizer = xiq.X86InductorQuantizer().set_global(config)
    for name in kept:
        quantizer.set_module_name_qconfig(name, None)
    if conv3d:
        quantizer = _with_conv3d(quantizer, config, kept)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = _export(graph, example).module()
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for batch in ctx["calibration"]:
                prepared(torch.from_numpy(batch))
        # for OpenVINO the weights stay fp32 → quantize → dequantize (a folded int8 weight
        # feeding dequantize_per_channel fails OpenVINO's conversion of the convolution)
        converted = convert_pt2e(prepared, fold_quantize=not conv3d)
    counts = _count_qdq(converted)
    ctx[key] = (converted, counts)
    return converted, counts


def _with_conv3d(base, config, kept: list[str]):
    """X86InductorQuantizer plus int8 annotations (input activation, per-channel weight) on
    aten.conv3d, which it does not annotate itself: the q/dq pairs OpenVINO turns into int8
    convolutions."""
    import torch
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, Quantizer

    class Conv3dToo(Quantizer):
        def annotate(self, model):
            base.annotate(model)
            for node in model.graph.nodes:
                if node.op != "call_function" or node.target != torch.ops.aten.conv3d.default:
                    continue
                stack = node.meta.get("nn_module_stack", {})
                path = list(stack.values())[-1][0] if stack else ""
                if any(path == k or path.endswith("." + k) for k in kept):
                    continue
                x, w = node.args[0], node.args[1]
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={x: config.input_activation, w: config.weight}, _annotated=True)
            return model

        def validate(self, model):
            pass

    return Conv3dToo()


def build_pt2e_eager(ctx):
    import torch

    module, counts = pt2e_quantized(ctx, conv3d=False)

    def forward(batch):
        with torch.no_grad():
            return module(torch.from_numpy(batch))[0].numpy()
    return Engine("pt2e-x86-eager", forward,
                  notes=f"torchao PT2E X86InductorQuantizer, converted q/dq graph run as is; {counts}")


def build_pt2e_inductor(ctx):
    import torch
    import torch._inductor.config as inductor_config

    module, counts = pt2e_quantized(ctx, conv3d=False)
    try:
        import torchao.quantization.pt2e.inductor_passes.x86  # noqa: F401  (registers the int8 lowerings)
    except ImportError:
        pass
    inductor_config.freezing = True
    compiled = torch.compile(module, dynamic=False)

    def forward(batch):
        with torch.no_grad():
            return compiled(torch.from_numpy(batch))[0].numpy()
    # compile now for batch 1 (counted in the build time); other batch sizes compile in warm-up
    forward(ctx["calibration"][0])
    return Engine("pt2e-x86-inductor", forward,
                  notes=f"torchao PT2E X86InductorQuantizer + torch.compile (inductor, freezing); {counts}")


def _ov_fp32_model(ctx):
    """The fp32 OpenVINO model: OpenVINORuntime's cached IR when there is one."""
    import openvino as ov
    import torch

    from clipwatch.registry import cache_home
    from inference.mxgraph import load_graph
    from inference.runtime import files_hash

    ir = cache_home() / "openvino" / f"{files_hash(ctx['dir'], ctx['shape'])}.xml"
    if ir.is_file():
        return ov.Core().read_model(str(ir))
    with torch.no_grad():
        return ov.convert_model(load_graph(ctx["dir"]), example_input=torch.zeros(ctx["shape"]),
                                input=[ov.PartialShape([-1, *ctx["shape"][1:]])])


def _alias_openvino_runtime() -> None:
    """nncf 2.14 imports ``openvino.runtime``, which OpenVINO 2026 no longer has (its names
    moved to ``openvino`` itself in 2024): alias it in this process only."""
    import types

    import openvino
    import openvino.op
    import openvino.opset13

    shim = types.ModuleType("openvino.runtime")
    shim.__dict__.update({k: getattr(openvino, k) for k in dir(openvino) if not k.startswith("__")})
    shim.opset13, shim.op = openvino.opset13, openvino.op
    if not hasattr(shim, "serialize"):
        shim.serialize = lambda model, xml, *a, **k: openvino.save_model(model, xml, compress_to_fp16=False)
    sys.modules["openvino.runtime"] = shim
    sys.modules["openvino.runtime.opset13"] = openvino.opset13
    sys.modules["openvino.runtime.op"] = openvino.op
    openvino.runtime = shim


def build_ov_nncf(ctx):
    import nncf

    model = _ov_fp32_model(ctx)
    calibration = list(ctx["calibration"])
    notes = ""
    try:
        import openvino.runtime  # noqa: F401
    except ImportError as exc:
        try:
            nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration))
        except Exception as unshimmed:  # noqa: BLE001
            notes = (f"as installed: {type(unshimmed).__name__}: {unshimmed} (cause: {exc}); "
                     "measured with openvino.runtime aliased to openvino in-process; ")
        _alias_openvino_runtime()
    quantized = nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration))
    return _ov_engine("ov-nncf-int8", quantized,
                      notes=notes + f"nncf {nncf.__version__} quantize (defaults: preset performance, "
                            "all convs), CPU, LATENCY, 2 threads")


def build_ov_pt2e(ctx):
    import openvino as ov
    import torch

    module, counts = pt2e_quantized(ctx, conv3d=True)
    example = torch.from_numpy(ctx["calibration"][0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = _export(module, example)
    model = ov.convert_model(exported)
    return _ov_engine("ov-pt2e-int8", model,
                      notes=f"PT2E (x86 config + Conv3d annotated) exported program → ov.convert_model; {counts}")


BUILDERS = {"torch-fp32": build_torch_fp32, "ov-fp32": build_ov_fp32,
            "torch-fx-onednn": build_fx_onednn, "torch-fx-x86": build_fx_x86,
            "pt2e-x86-eager": build_pt2e_eager, "pt2e-x86-inductor": build_pt2e_inductor,
            "ov-nncf-int8": build_ov_nncf, "ov-pt2e-int8": build_ov_pt2e}


# ---------------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------------

def agreement(engines: dict[str, Engine], clips: np.ndarray, chunk: int, bar, task) -> dict:
    logits = {}
    for name, engine in engines.items():
        try:
            logits[name] = np.concatenate([engine.forward(clips[i:i + chunk])
                                           for i in range(0, len(clips), chunk)])
        except Exception as exc:  # noqa: BLE001
            logits[name] = _short_error(exc)
        bar.advance(task)
    base = logits[BASELINE]
    out = {}
    for name, value in logits.items():
        if isinstance(value, str):
            out[name] = {"error": value}
            continue
        out[name] = {"clips": len(value),
                     "top1_agreement": round(float(np.mean(value.argmax(1) == base.argmax(1))), 4),
                     "max_abs_logit_diff": round(float(np.max(np.abs(value - base))), 4),
                     "mean_abs_logit_diff": round(float(np.mean(np.abs(value - base))), 5),
                     "max_abs_fp32_logit": round(float(np.max(np.abs(base))), 4)}
    return out


def time_cell(engine: Engine, x: np.ndarray, warmup: int, repeats: int) -> dict:
    first = []
    for _ in range(warmup):
        start = time.perf_counter()
        engine.forward(x)
        first.append((time.perf_counter() - start) * 1000)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.forward(x)
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": float(np.median(times)), "times_ms": [round(t, 1) for t in times],
            "warmup_ms": [round(t, 1) for t in first]}


def run_model(name: str, args) -> dict:
    import torch

    from inference.model import ModelCard
    from inference.model_fetch import fetch

    if name == "i3d-r50":
        model_dir = R50_DIR if (R50_DIR / "model.json").is_file() else build_r50_model_dir(R50_DIR)
    else:
        model_dir = fetch("kinetics400", progress=False)
    spec = ModelCard.model_validate_json((model_dir / "model.json").read_text()).input
    n_cal, n_eval = args.calibration_clips, args.eval_clips
    with console.status(f"{name}: making {n_cal + n_eval} clips"):
        if name == "kinetics400":
            per_file = -(-(n_cal + n_eval) // len(KINETICS_FOOTAGE))
            clips, clip_names = kinetics_clips(model_dir, per_file)
            source = "real footage (clipwatch.footage: " + ", ".join(KINETICS_FOOTAGE) + \
                     f"), {per_file} clip(s) each, decoded + normalized as served"
        else:
            clips, clip_names = synthetic_clips(model_dir, n_cal + n_eval)
            source = "training.synth activities (random-weight network)"
    clips, clip_names = clips[:n_cal + n_eval], clip_names[:n_cal + n_eval]
    ctx = {"dir": model_dir, "shape": spec.clip_shape(),
           "calibration": [clips[i:i + 1] for i in range(n_cal)]}
    held_out = clips[n_cal:]
    result = {"model_dir": str(model_dir), "input": [3, spec.frames, spec.crop, spec.crop],
              "clips": source, "calibration_clips": clip_names[:n_cal],
              "held_out_clips": clip_names[n_cal:], "engines": {}, "errors": {}}

    engines: dict[str, Engine] = {}
    with progress() as bar:
        task = bar.add_task(f"{name}: building engines", total=len(args.engines))
        for engine_name in args.engines:
            bar.update(task, description=f"{name}: building {engine_name}")
            start = time.perf_counter()
            try:
                engines[engine_name] = BUILDERS[engine_name](ctx)
                seconds = time.perf_counter() - start
                result["engines"][engine_name] = {"build_s": round(seconds, 1),
                                                  "notes": engines[engine_name].notes}
                console.print(f"  {name}: {engine_name} ready in {seconds:.1f} s")
            except Exception as exc:  # noqa: BLE001
                result["errors"][engine_name] = _short_error(exc)
                console.print(f"  [red]{name}: {engine_name} failed: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:300] if str(exc) else ''}")
            bar.advance(task)
    torch.backends.quantized.engine = "onednn"
    if BASELINE not in engines:
        raise SystemExit(f"{name}: the baseline failed: {result['errors'].get(BASELINE)}")

    chunk = min(4, len(held_out))
    with progress() as bar:
        task = bar.add_task(f"{name}: agreement on {len(held_out)} held-out clips", total=len(engines))
        result["agreement"] = agreement(engines, held_out, chunk, bar, task)
    for engine_name, value in result["agreement"].items():
        if "error" in value:
            result["errors"][engine_name] = value["error"]
            engines.pop(engine_name)

    rounds: dict = {e: {b: [] for b in args.batches} for e in engines}
    details: dict = {e: {b: [] for b in args.batches} for e in engines}
    order = list(engines)
    cells = args.rounds * len(args.batches) * len(order)
    with progress() as bar:
        task = bar.add_task(f"{name}: timing", total=cells)
        for r in range(args.rounds):
            rotated = order[r % len(order):] + order[:r % len(order)]
            for b in args.batches:
                x = np.concatenate([held_out] * (-(-b // len(held_out))))[:b]
                for engine_name in rotated:
                    bar.update(task, description=f"{name}: round {r + 1}, batch {b}, {engine_name}")
                    if engine_name not in engines:
                        bar.advance(task)
                        continue
                    if engine_name == "pt2e-x86-eager" and b > 1:
                        bar.advance(task)  # the q/dq reference graph: batch 1 says enough
                        continue
                    try:
                        # later rounds: the engine has run before, one forward re-warms it
                        warmup = args.warmup if r == 0 else min(args.warmup, 1)
                        cell = time_cell(engines[engine_name], x, warmup, args.repeats)
                        rounds[engine_name][b].append(cell["median_ms"])
                        details[engine_name][b].append(cell)
                    except Exception as exc:  # noqa: BLE001
                        result["errors"][f"{engine_name} (batch {b})"] = _short_error(exc)
                        engines.pop(engine_name)
                    bar.advance(task)

    timing = {}
    for engine_name in rounds:
        for b in args.batches:
            values = rounds[engine_name][b]
            base = rounds[BASELINE][b]
            if not values or not base:
                continue
            ms, base_ms = float(np.median(values)), float(np.median(base))
            # per-round ratios too: both were measured within the same round, minutes apart
            paired = [v / bv for v, bv in zip(values, base)]
            timing.setdefault(engine_name, {})[str(b)] = {
                "median_ms_per_forward": round(ms, 1), "ms_per_clip": round(ms / b, 1),
                "speedup_vs_torch_fp32": round(base_ms / ms, 3),
                "speedup_per_round": [round(1 / p, 3) for p in paired],
                "round_medians_ms": [round(v, 1) for v in values],
                "spread_ms": [round(min(values), 1), round(max(values), 1)],
                "first_warmup_ms": details[engine_name][b][0]["warmup_ms"][0] if details[engine_name][b] else None}
    result["timing"] = timing
    return result


# ---------------------------------------------------------------------------------------------

def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(result["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(7.5 * len(models), 5.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        timing = result["models"][model].get("timing", {})
        engines = [e for e in ENGINES if e in timing]
        batches = result["settings"]["batches"]
        width = 0.8 / max(1, len(batches))
        for j, b in enumerate(batches):
            values = [timing[e].get(str(b), {}).get("ms_per_clip", np.nan) for e in engines]
            bars = ax.bar(np.arange(len(engines)) + (j - (len(batches) - 1) / 2) * width, values,
                          width, label=f"batch {b}")
            for rect, e in zip(bars, engines):
                s = timing[e].get(str(b), {}).get("speedup_vs_torch_fp32")
                if s:
                    ax.annotate(f"{s:.2f}×", (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                                ha="center", va="bottom", fontsize=6, rotation=90)
        ax.set_xticks(np.arange(len(engines)))
        ax.set_xticklabels(engines, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("ms per clip (median over rounds)")
        ax.set_title(f"{model}: 32×224², {result['machine']['threads']} threads")
        ax.legend(fontsize=8)
    fig.suptitle(f"int8 engines on {result['machine']['cpu']} "
                 f"(int8 dot product: {result['machine']['int8_dot_product']}); labels: speed vs torch fp32",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> dict:
    import openvino
    import torch

    from inference.quantize import cpu_has_int8_dot_product
    from inference.runtime import cpu_has_native_bf16

    flags = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines()
                  if line.startswith("model name")), platform.processor())
    first_flags = next((line.split(":", 1)[1].split() for line in flags.splitlines()
                        if line.startswith("flags")), [])
    versions = {"torch": torch.__version__, "openvino": openvino.__version__,
                "numpy": np.__version__}
    for pkg in ("nncf", "torchao"):
        try:
            versions[pkg] = __import__(pkg).__version__
        except Exception:  # noqa: BLE001
            versions[pkg] = None
    return {"cpu": model, "cores": os.cpu_count(), "threads": THREADS,
            "simd_flags": sorted(f for f in first_flags if f.startswith(("avx", "amx", "fma", "f16c"))
                                 or "vnni" in f or "bf16" in f),
            "int8_dot_product": cpu_has_int8_dot_product(), "native_bf16": cpu_has_native_bf16(),
            "versions": versions}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: batch 1, 1 round, 2 calibration + 2 held-out clips, 3 timed forwards")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--batches", default="1,2,4")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--calibration-clips", type=int, default=8)
    p.add_argument("--eval-clips", type=int, default=16)
    args = p.parse_args(argv)
    if args.quick:
        args.batches, args.rounds, args.repeats = "1", 1, 3
        args.calibration_clips, args.eval_clips = 2, 2
    args.batches = [int(b) for b in args.batches.split(",")]
    args.models = [m for m in args.models.split(",") if m]
    args.engines = [e for e in args.engines.split(",") if e]
    unknown = [e for e in args.engines if e not in BUILDERS] + [m for m in args.models if m not in MODELS]
    if unknown:
        p.error(f"unknown engines/models: {unknown}")
    if BASELINE not in args.engines:
        args.engines.insert(0, BASELINE)

    import torch

    torch.set_num_threads(THREADS)
    started = time.time()
    result = {"benchmark": "int8_engines",
              "command": " ".join([".venv/bin/python", "benchmarks/int8_engines.py",
                                   *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
              "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(),
              "settings": {"batches": args.batches, "rounds": args.rounds, "warmup": args.warmup,
                           "repeats": args.repeats, "calibration_clips": args.calibration_clips,
                           "eval_clips": args.eval_clips, "quick": args.quick},
              "models": {}}
    console.print(f"CPU {result['machine']['cpu']}, {result['machine']['simd_flags']}, "
                  f"int8 dot product: {result['machine']['int8_dot_product']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        result["models"][model] = run_model(model, args)
        _print(model, result["models"][model], args.batches)
        # written after each model: a long run interrupted later keeps what it measured
        result["wall_s"] = round(time.time() - started, 1)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        plot(result, args.out.with_suffix(".png"))
    console.print(f"results written to {args.out} and {args.out.with_suffix('.png')}")
    return 0


def _print(model: str, r: dict, batches: list[int]) -> None:
    from rich.table import Table

    table = Table(title=f"{model} ({len(r['held_out_clips'])} held-out clips)")
    for col in ("engine", "batch", "ms/forward", "ms/clip", "× fp32", "rounds (ms)", "top-1 agree", "max |Δlogit|"):
        table.add_column(col)
    for engine, cells in r.get("timing", {}).items():
        agree = r["agreement"].get(engine, {})
        for b in batches:
            c = cells.get(str(b))
            if c:
                table.add_row(engine, str(b), f"{c['median_ms_per_forward']:.0f}", f"{c['ms_per_clip']:.0f}",
                              f"{c['speedup_vs_torch_fp32']:.2f}", str(c["round_medians_ms"]),
                              f"{agree.get('top1_agreement', float('nan')):.3f}",
                              f"{agree.get('max_abs_logit_diff', float('nan')):.4g}")
    console.print(table)
    for engine, err in r["errors"].items():
        console.print(f"[red]{engine}: {err.splitlines()[-1][:400]}")


if __name__ == "__main__":
    sys.exit(main())
