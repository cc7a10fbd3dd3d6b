"""Networks to fine-tune: GluonCV's I3D-ResNet50 (the cloud model) and ``i3d_tiny``, an
I3D-family network sized for a 2-core CPU (the demo model).

``i3d_tiny`` keeps what makes I3D an I3D — 2D image kernels inflated into 3D space-time
kernels over a clip, pooled globally — at 16–128 channels instead of 64–2048, so a 16×64²
clip takes milliseconds and it trains from scratch on the synthetic activities in minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

from clipwatch.errors import ModelUnavailable

TINY = "i3d_tiny"


def i3d_tiny_features(width: int = 16):
    """Four inflated 3D convolutions (3×5×5 stem, then 3×3×3), strided in space from the start
    and in time from the third, and a global max pool: (N, 3, T, H, W) → (N, 8·width).

    No normalization layers: MXNet 1.9.1's oneDNN backend fails to train Conv3D + BatchNorm
    from the second step on ("Check failed: !is_view", measured here), without oneDNN a step is
    ~1000× slower, and GroupNorm / channel LayerNorm made steps 4–5× slower. At this depth
    plain convolutions with Adam train well without them. No residual blocks either: with
    SkipInit residuals (no norm) a step took 3× longer and generalized worse on 200 clips."""
    from mxnet.gluon import nn

    f = nn.HybridSequential()
    for i, (channels, kernel, stride) in enumerate([
            (width, (3, 5, 5), (1, 2, 2)), (2 * width, 3, (1, 2, 2)),
            (4 * width, 3, (2, 2, 2)), (8 * width, 3, (2, 2, 2))]):
        pad = tuple(k // 2 for k in kernel) if isinstance(kernel, tuple) else 1
        f.add(nn.Conv3D(channels, kernel, strides=stride, padding=pad), nn.Activation("relu"))
    # Max, not average: an activity here is a small object against a large static scene, and
    # averaging dilutes its motion features (validation top-1 rose ~2× with max pooling).
    f.add(nn.GlobalMaxPool3D(), nn.Flatten())
    return f


def with_new_classifier(features, num_classes: int, dropout: float = 0.3):
    """Transfer learning as in the seed: keep the features, put a fresh dense layer on top."""
    from mxnet.gluon import nn

    net = nn.HybridSequential()
    net.add(features, nn.Dropout(dropout), nn.Dense(num_classes))
    return net


def base_dir(base: str | Path) -> Path | None:
    """The model directory a base names: a folder, or a catalogue name once fetched
    (``kinetics400``: DeepMind's I3D); None for ``i3d_tiny`` and GluonCV model-zoo names."""
    from inference.catalogue import resolve

    if str(base) == TINY:
        return None
    path = Path(base)
    return path if path.is_dir() else resolve(str(base))


def features_of(base: str | Path, ctx):
    """The feature extractor of a base model: ``i3d_tiny`` (fresh), a model directory or
    catalogue name (its network up to the input of its last dense layer), or a GluonCV
    model-zoo name (pretrained weights, downloaded on first use). Returns (features,
    pretrained: bool)."""
    import mxnet as mx

    if str(base) == TINY:
        f = i3d_tiny_features()
        f.initialize(mx.init.Xavier(magnitude=2.0), ctx=ctx)
        return f, False
    path = base_dir(base)
    if path is not None:
        return _features_from_dir(path, ctx), True
    return _features_from_zoo(str(base), ctx), True


def _features_from_dir(path: Path, ctx):
    import mxnet as mx

    symbol_file, params_file = path / "model-symbol.json", path / "model-0000.params"
    if not symbol_file.is_file() or not params_file.is_file():
        raise ModelUnavailable(f"{path} is not a model directory (no model-symbol.json / model-0000.params)")
    sym = mx.sym.load(str(symbol_file))
    if json.loads(sym.tojson())["nodes"][-1]["op"] != "FullyConnected":
        raise ModelUnavailable(f"the network in {path} does not end in a dense classifier")
    features = mx.gluon.SymbolBlock(sym.get_children()[0], mx.sym.var("data"))  # the dense's input
    features.collect_params().load(str(params_file), ctx=ctx, ignore_extra=True, allow_missing=False)
    return features


def classifier_of(path: Path):
    """The last dense layer of a model directory's network as numpy (weight (C, D), bias (C,)):
    where fine-tuning a model on its own classes starts from (``training.train.train_head``)."""
    import mxnet as mx

    nodes = json.loads((Path(path) / "model-symbol.json").read_text())["nodes"]
    dense = nodes[-1]
    if dense["op"] != "FullyConnected" or len(dense["inputs"]) != 3:
        return None
    names = [nodes[i]["name"] for i, *_ in dense["inputs"][1:]]
    params = mx.nd.load(str(Path(path) / "model-0000.params"))
    found = [params.get(f"arg:{n}", params.get(n)) for n in names]
    return None if any(f is None for f in found) else tuple(f.asnumpy() for f in found)


def _features_from_zoo(name: str, ctx):
    from inference.model import zoo_network

    net = zoo_network(name, ctx)
    net.feat_ext = True  # GluonCV's video nets then stop before their head (dropout + dense)
    return net
