"""A model directory's MXNet graph (``model-symbol.json`` + ``model-0000.params``) as a PyTorch
module, so any network we serve runs on PyTorch without a hand-written port.

The symbol JSON is interpreted node by node into a ``torch.fx`` graph of standard modules
(Conv3d, MaxPool3d, Linear, …): an ordinary ``nn.Module`` that autocast, channels-last and the
fx quantization passes all understand. Inference-time simplifications are made on the way:
BatchNorm after a convolution is folded into the convolution's weights, Dropout disappears.

The module returns ``(logits, features)``: ``features`` is the input of the final
FullyConnected layer (the pooled clip features), flattened — the embedding the endpoint stores.

An operator outside ``SUPPORTED_OPS`` raises ``UnsupportedGraph`` naming it; such a model is
served with the MXNet runtime instead. The ``.params`` file is read here too (``read_params``),
so the PyTorch runtime does not need MXNet at all.
"""

from __future__ import annotations

import ast
import json
import struct
from pathlib import Path

import numpy as np

from clipwatch.errors import ModelUnavailable


class UnsupportedGraph(ModelUnavailable):
    """The MXNet graph uses an operator (or attribute) this interpreter does not translate."""


# ---------------------------------------------------------------------------------------------
# model-0000.params: MXNet's NDArray list format (dmlc serialization, little-endian)
# ---------------------------------------------------------------------------------------------

_LIST_MAGIC = 0x112
_NDARRAY_V1, _NDARRAY_V2, _NDARRAY_V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8,
           6: np.int64, 7: np.bool_}


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError("file ends early")
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def raw(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise ValueError("file ends early")
        out = self.data[self.pos:self.pos + size]
        self.pos += size
        return out


def _read_ndarray(r: _Reader) -> np.ndarray:
    magic = r.take("I")
    if magic not in (_NDARRAY_V2, _NDARRAY_V3):
        raise ValueError(f"unsupported NDArray record (magic {magic:#x}); re-export the model "
                         "with MXNet ≥ 1.0")
    if r.take("i") != 0:
        raise ValueError("sparse NDArrays are not supported")
    ndim = r.take("I")
    shape = tuple(r.take(f"{ndim}q")) if ndim > 1 else ((r.take("q"),) if ndim == 1 else ())
    if magic == _NDARRAY_V3 and ndim == 0:
        return np.zeros((), np.float32)
    r.take("ii")  # the context it was saved from
    dtype = _DTYPES.get(r.take("i"))
    if dtype is None:
        raise ValueError("unknown NDArray dtype")
    count = int(np.prod(shape)) if shape else 1
    return np.frombuffer(r.raw(count * np.dtype(dtype).itemsize), dtype=dtype).reshape(shape).copy()


def read_params(path: str | Path) -> dict[str, np.ndarray]:
    """``model-0000.params`` → {"arg:name" | "aux:name": array}, as ``mx.nd.load`` gives."""
    r = _Reader(Path(path).read_bytes())
    try:
        if r.take("Q") != _LIST_MAGIC:
            raise ValueError("not an MXNet .params file")
        r.take("Q")  # reserved
        arrays = [_read_ndarray(r) for _ in range(r.take("Q"))]
        names = [r.raw(r.take("Q")).decode() for _ in range(r.take("Q"))]
    except (ValueError, struct.error) as exc:
        raise ModelUnavailable(f"cannot read {path}: {exc}") from None
    if len(names) != len(arrays):
        raise ModelUnavailable(f"cannot read {path}: {len(arrays)} arrays but {len(names)} names")
    return dict(zip(names, arrays))


# ---------------------------------------------------------------------------------------------
# model-symbol.json → torch.fx
# ---------------------------------------------------------------------------------------------

SUPPORTED_OPS = ("null", "Convolution", "BatchNorm", "Activation", "relu", "Pooling",
                 "FullyConnected", "Flatten", "Dropout", "elemwise_add", "broadcast_add", "_Plus",
                 "squeeze", "Reshape", "reshape", "mean", "Concat", "concat", "softmax",
                 "SoftmaxActivation", "identity", "_copy", "BlockGrad", "Pad", "pad")


def _tuple(text: str | None, default=()) -> tuple:
    if text is None:
        return default
    value = ast.literal_eval(text)
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _bool(text: str | None, default: bool = False) -> bool:
    return default if text is None else text.strip().lower() in ("true", "1")


_PASS_THROUGH = ("softmax", "SoftmaxActivation", "identity", "_copy", "BlockGrad", "Flatten",
                 "Dropout", "Reshape", "reshape", "squeeze")


def final_dense(symbol: dict) -> int | None:
    """The node id of the FullyConnected layer producing the output (through pass-through ops
    such as a softmax), or None when the network does not end in one."""
    nodes, nid = symbol["nodes"], symbol["heads"][0][0]
    while True:
        node = nodes[nid]
        if node["op"] == "FullyConnected":
            return nid
        if node["op"] not in _PASS_THROUGH or not node.get("inputs"):
            return None
        nid = node["inputs"][0][0]


def dense_input_name(symbol: dict) -> str | None:
    """The name of the node feeding the final FullyConnected layer: its output is the clip
    embedding."""
    head = final_dense(symbol)
    if head is None:
        return None
    return symbol["nodes"][symbol["nodes"][head]["inputs"][0][0]]["name"]


class _Builder:
    """Walks the symbol's nodes in order (the JSON is topologically sorted) and emits fx nodes."""

    def __init__(self, symbol: dict, params: dict[str, np.ndarray]):
        import torch
        import torch.fx as fx

        self.torch, self.nn = torch, torch.nn
        self.nodes, self.heads = symbol["nodes"], symbol["heads"]
        self.params = {k.split(":", 1)[1]: v for k, v in params.items()}
        self.root = torch.nn.Module()
        self.graph = fx.Graph()
        self.values: dict[tuple[int, int], object] = {}  # (node id, output) → fx node
        self.consumers = self._count_consumers(symbol)
        self.folded: set[int] = set()  # BatchNorm nodes merged into their convolution
        self.head = final_dense(symbol)
        self.features = None

    def _count_consumers(self, symbol: dict) -> dict[int, int]:
        counts: dict[int, int] = {}
        for node in self.nodes:
            for src, *_ in node.get("inputs", []):
                counts[src] = counts.get(src, 0) + 1
        for src, *_ in symbol["heads"]:
            counts[src] = counts.get(src, 0) + 1
        return counts

    # -- helpers --------------------------------------------------------------------------
    def param(self, nid: int) -> np.ndarray:
        name = self.nodes[nid]["name"]
        if name not in self.params:
            raise ModelUnavailable(f"model-0000.params lacks {name!r}, which the graph uses")
        return self.params[name]

    def add_module(self, node: dict, module) -> str:
        name = node["name"].replace(".", "_")
        self.root.add_module(name, module)
        return name

    def arg(self, node: dict, i: int):
        src, out, *_ = node["inputs"][i]
        return self.values[(src, out)]

    def tensor(self, array: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    # -- the walk -------------------------------------------------------------------------
    def build(self, input_name: str = "data"):
        import torch.fx as fx

        for nid, node in enumerate(self.nodes):
            op, attrs = node["op"], node.get("attrs", node.get("param", {})) or {}
            if op == "null":
                if node["name"] == input_name:
                    self.values[(nid, 0)] = self.graph.placeholder(input_name)
                continue
            if nid in self.folded:
                continue
            handler = getattr(self, f"op_{op.lstrip('_')}", None)
            if handler is None or op not in SUPPORTED_OPS:
                raise UnsupportedGraph(
                    f"the PyTorch runtime cannot translate MXNet operator {op!r} (node "
                    f"{node['name']!r}); serve this model with --runtime mxnet")
            self.values[(nid, 0)] = handler(nid, node, attrs)
            if nid == self.head:
                self.features = self._dense_input(node)
        head_src, head_out, *_ = self.heads[0]
        output = self.values[(head_src, head_out)]
        features = self.features if self.features is not None else output
        self.graph.output((output, features))
        return fx.GraphModule(self.root, self.graph, class_name="MXNetGraph")

    def _dense_input(self, node: dict):
        return self.graph.call_function(self.torch.flatten, (self.arg(node, 0), 1))

    # -- operators ------------------------------------------------------------------------
    def op_Convolution(self, nid: int, node: dict, a: dict):
        kernel = _tuple(a.get("kernel"))
        dims = len(kernel)
        if a.get("layout") not in (None, "None", "NCW", "NCHW", "NCDHW"):
            raise UnsupportedGraph(f"convolution layout {a['layout']} (node {node['name']!r})")
        conv_cls = {1: self.nn.Conv1d, 2: self.nn.Conv2d, 3: self.nn.Conv3d}[dims]
        weight = self.param(node["inputs"][1][0])
        no_bias = _bool(a.get("no_bias"))
        bias = None if no_bias else self.param(node["inputs"][2][0])
        conv = conv_cls(weight.shape[1] * int(a.get("num_group", 1)), int(a["num_filter"]), kernel,
                        stride=_tuple(a.get("stride"), (1,) * dims) or (1,) * dims,
                        padding=_tuple(a.get("pad"), (0,) * dims) or (0,) * dims,
                        dilation=_tuple(a.get("dilate"), (1,) * dims) or (1,) * dims,
                        groups=int(a.get("num_group", 1)), bias=True)
        w = weight.astype(np.float64)
        b = np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)
        bn = self._following_batchnorm(nid)
        if bn is not None:  # fold: y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta
            gamma, beta, mean, var, eps = self._bn_params(bn)
            scale = gamma / np.sqrt(var + eps)
            w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
            b = (b - mean) * scale + beta
            self.folded.add(bn)  # its consumers read the convolution's output (below)
        conv.weight.data = self.tensor(w)
        conv.bias.data = self.tensor(b)
        out = self.graph.call_module(self.add_module(node, conv), (self.arg(node, 0),))
        if bn is not None:
            self.values[(bn, 0)] = out
        return out

    def _following_batchnorm(self, nid: int) -> int | None:
        if self.consumers.get(nid, 0) != 1:
            return None
        for later in range(nid + 1, len(self.nodes)):
            node = self.nodes[later]
            if any(src == nid for src, *_ in node.get("inputs", [])):
                return later if node["op"] == "BatchNorm" else None
        return None

    def _bn_params(self, nid: int):
        node = self.nodes[nid]
        a = node.get("attrs", {}) or {}
        gamma, beta, mean, var = (self.param(node["inputs"][i][0]).astype(np.float64)
                                  for i in range(1, 5))
        if _bool(a.get("fix_gamma"), True):
            gamma = np.ones_like(gamma)
        if int(a.get("axis", 1)) != 1:
            raise UnsupportedGraph(f"BatchNorm over axis {a['axis']} (node {node['name']!r})")
        return gamma, beta, mean, var, float(a.get("eps", 1e-3))

    def op_BatchNorm(self, nid: int, node: dict, a: dict):
        gamma, beta, mean, var, eps = self._bn_params(nid)
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        x = self.arg(node, 0)
        # An affine per channel, broadcast over whatever spatial dimensions follow.
        s_name = self.add_module(node, _ChannelAffine(self.tensor(scale), self.tensor(shift)))
        return self.graph.call_module(s_name, (x,))

    def op_Activation(self, nid: int, node: dict, a: dict):
        kind = a.get("act_type", "relu")
        fn = {"relu": self.nn.ReLU, "sigmoid": self.nn.Sigmoid, "tanh": self.nn.Tanh,
              "softrelu": self.nn.Softplus}.get(kind)
        if fn is None:
            raise UnsupportedGraph(f"activation {kind!r} (node {node['name']!r})")
        return self.graph.call_module(self.add_module(node, fn()), (self.arg(node, 0),))

    def op_relu(self, nid, node, a):
        return self.graph.call_module(self.add_module(node, self.nn.ReLU()), (self.arg(node, 0),))

    def op_Pooling(self, nid: int, node: dict, a: dict):
        kind = a.get("pool_type", "max")
        x = self.arg(node, 0)
        if _bool(a.get("global_pool")):
            dims = len(_tuple(a.get("kernel"), (1, 1))) or 2
            axes = tuple(range(2, 2 + dims))
            if kind == "avg":
                return self.graph.call_method("mean", (x, axes), {"keepdim": True})
            if kind == "max":
                return self.graph.call_method("amax", (x, axes), {"keepdim": True})
            raise UnsupportedGraph(f"global {kind} pooling (node {node['name']!r})")
        kernel = _tuple(a.get("kernel"))
        dims = len(kernel)
        stride = _tuple(a.get("stride"), (1,) * dims) or (1,) * dims
        pad = _tuple(a.get("pad"), (0,) * dims) or (0,) * dims
        ceil = a.get("pooling_convention", "valid") == "full"
        if kind == "max":
            cls = {1: self.nn.MaxPool1d, 2: self.nn.MaxPool2d, 3: self.nn.MaxPool3d}[dims]
            module = cls(kernel, stride, pad, ceil_mode=ceil)
        elif kind == "avg" and dims == 3:
            # PyTorch's CPU avg_pool3d has no bfloat16 kernel: pool in float32 (the head of
            # DeepMind's I3D: one small pool, its cost does not show)
            return self.graph.call_function(_avg_pool3d, (x, kernel, stride, pad, ceil, _bool(
                a.get("count_include_pad"), True)))
        elif kind == "avg":
            cls = {1: self.nn.AvgPool1d, 2: self.nn.AvgPool2d}[dims]
            module = cls(kernel, stride, pad, ceil_mode=ceil,
                         count_include_pad=_bool(a.get("count_include_pad"), True))
        else:
            raise UnsupportedGraph(f"{kind} pooling (node {node['name']!r})")
        return self.graph.call_module(self.add_module(node, module), (x,))

    def op_FullyConnected(self, nid: int, node: dict, a: dict):
        weight = self.param(node["inputs"][1][0])
        no_bias = _bool(a.get("no_bias"))
        linear = self.nn.Linear(weight.shape[1], weight.shape[0], bias=not no_bias)
        linear.weight.data = self.tensor(weight)
        if not no_bias:
            linear.bias.data = self.tensor(self.param(node["inputs"][2][0]))
        x = self.arg(node, 0)
        if _bool(a.get("flatten"), True):
            x = self.graph.call_function(self.torch.flatten, (x, 1))
        return self.graph.call_module(self.add_module(node, linear), (x,))

    def op_Flatten(self, nid, node, a):
        return self.graph.call_function(self.torch.flatten, (self.arg(node, 0), 1))

    def op_Dropout(self, nid, node, a):  # inference: identity
        return self.arg(node, 0)

    op_identity = op_copy = op_BlockGrad = op_Dropout

    def op_elemwise_add(self, nid, node, a):
        return self.graph.call_function(self.torch.add, (self.arg(node, 0), self.arg(node, 1)))

    op_broadcast_add = op_Plus = op_elemwise_add

    def op_squeeze(self, nid, node, a):
        axes = _tuple(a.get("axis"))
        x = self.arg(node, 0)
        for axis in sorted(axes, reverse=True):
            x = self.graph.call_method("squeeze", (x, axis))
        return x if axes else self.graph.call_method("squeeze", (x,))

    def op_Reshape(self, nid, node, a):
        shape = _tuple(a.get("shape"))
        if any(d < -1 for d in shape) or _bool(a.get("reverse")):
            raise UnsupportedGraph(f"Reshape with MXNet's special codes {shape} (node "
                                   f"{node['name']!r})")
        x = self.arg(node, 0)
        if 0 in shape:  # 0 copies that input dimension
            size = self.graph.call_method("size", (x,))
            dims = [self.graph.call_function(_getitem, (size, i)) if d == 0 else d
                    for i, d in enumerate(shape)]
            return self.graph.call_method("reshape", (x, *dims))
        return self.graph.call_method("reshape", (x, shape))

    op_reshape = op_Reshape

    def op_mean(self, nid, node, a):
        axes = _tuple(a.get("axis"))
        if _bool(a.get("exclude")):
            raise UnsupportedGraph(f"mean with exclude=True (node {node['name']!r})")
        keep = _bool(a.get("keepdims"))
        x = self.arg(node, 0)
        if not axes:
            return self.graph.call_method("mean", (x,))
        return self.graph.call_method("mean", (x, axes), {"keepdim": keep})

    def op_Concat(self, nid, node, a):
        parts = [self.arg(node, i) for i in range(len(node["inputs"]))]
        return self.graph.call_function(self.torch.cat, (parts, int(a.get("dim", 1))))

    op_concat = op_Concat

    def op_softmax(self, nid, node, a):
        return self.graph.call_function(self.torch.softmax, (self.arg(node, 0), int(a.get("axis", -1))))

    op_SoftmaxActivation = op_softmax

    def op_Pad(self, nid, node, a):
        """Constant padding (TensorFlow's asymmetric "SAME", inference.inception_i3d)."""
        if a.get("mode", "constant") != "constant":
            raise UnsupportedGraph(f"{a['mode']} padding (node {node['name']!r})")
        width = _tuple(a.get("pad_width"))
        pairs = [width[i:i + 2] for i in range(0, len(width), 2)]
        flat = tuple(p for pair in reversed(pairs) for p in pair)  # last axis first, as F.pad
        return self.graph.call_function(self.torch.nn.functional.pad, (self.arg(node, 0), flat),
                                        {"value": float(a.get("constant_value", 0.0))})

    op_pad = op_Pad


def _getitem(seq, i):
    return seq[i]


def _avg_pool3d(x, kernel, stride, pad, ceil_mode, count_include_pad):
    import torch

    out = torch.nn.functional.avg_pool3d(x.float(), kernel, stride, pad, ceil_mode, count_include_pad)
    return out.to(x.dtype)


def _channel_affine_module():
    import torch

    class ChannelAffine(torch.nn.Module):
        """An inference BatchNorm that could not be folded: x * scale + shift per channel."""

        def __init__(self, scale, shift):
            super().__init__()
            self.register_buffer("scale", scale)
            self.register_buffer("shift", shift)

        def forward(self, x):
            shape = (1, -1) + (1,) * (x.dim() - 2)
            return x * self.scale.reshape(shape) + self.shift.reshape(shape)

    return ChannelAffine


class _LazyAffine:
    cls = None

    def __call__(self, scale, shift):
        if _LazyAffine.cls is None:
            _LazyAffine.cls = _channel_affine_module()
        return _LazyAffine.cls(scale, shift)


_ChannelAffine = _LazyAffine()


def load_graph(model_dir: str | Path, input_name: str = "data"):
    """The model directory's network as an eval-mode ``torch.fx.GraphModule`` returning
    ``(logits, features)``."""
    model_dir = Path(model_dir)
    try:
        symbol = json.loads((model_dir / "model-symbol.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot read {model_dir / 'model-symbol.json'}: {exc}") from None
    params = read_params(model_dir / "model-0000.params")
    return _Builder(symbol, params).build(input_name).eval()
