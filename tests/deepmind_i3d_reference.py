"""An independent forward of DeepMind's Kinetics-400 I3D, written for the fidelity test straight
from the checkpoint's arrays in PyTorch: NDHWC order kept until the convolution, TensorFlow
"SAME" padding computed per layer (zeros for convolutions, −inf for max pools), BatchNorm
applied unfolded, logits from the 1×1×1 convolution averaged over time. It shares no code with
``inference.inception_i3d``, which builds the served MXNet graph."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MODULES = [("Mixed_3b", None), ("Mixed_3c", "pool3x3_s2"), ("Mixed_4b", None), ("Mixed_4c", None),
           ("Mixed_4d", None), ("Mixed_4e", None), ("Mixed_4f", "pool2x2_s2"),
           ("Mixed_5b", None), ("Mixed_5c", None)]


def _same(x: torch.Tensor, kernel, stride, value: float) -> torch.Tensor:
    """Pad an (N, C, T, H, W) tensor the way TensorFlow's SAME does."""
    pads = []
    for size, k, s in zip(x.shape[2:], kernel, stride):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    flat = [p for before_after in reversed(pads) for p in before_after]  # W, H, T order
    return F.pad(x, flat, value=value)


class Reference:
    def __init__(self, tree: dict):
        self.params, self.stats = tree["params"], tree["batch_stats"]

    def _get(self, tree, path, *keys):
        if path.startswith("Mixed_"):
            top, rest = path.split("/", 1)
            node = tree[top][rest]
        else:
            node = tree[path]
        for k in keys:
            node = node[k]
        return torch.from_numpy(np.asarray(node, np.float64))

    def unit(self, x, path, stride=(1, 1, 1), bn=True, relu=True):
        kernel = self._get(self.params, path, "Conv_0", "kernel")  # D, H, W, I, O
        weight = kernel.permute(4, 3, 0, 1, 2).contiguous()
        x = _same(x, weight.shape[2:], stride, 0.0)
        bias = self._get(self.params, path, "Conv_0", "bias") if not bn else None
        x = F.conv3d(x, weight, bias, stride)
        if bn:
            mean = self._get(self.stats, path, "BatchNorm_0", "mean").reshape(1, -1, 1, 1, 1)
            var = self._get(self.stats, path, "BatchNorm_0", "var").reshape(1, -1, 1, 1, 1)
            beta = self._get(self.params, path, "BatchNorm_0", "bias").reshape(1, -1, 1, 1, 1)
            x = (x - mean) / torch.sqrt(var + 1e-3) + beta
        return F.relu(x) if relu else x

    @staticmethod
    def max_pool(x, kernel, stride):
        return F.max_pool3d(_same(x, kernel, stride, float("-inf")), kernel, stride)

    def mixed(self, x, name):
        b0 = self.unit(x, f"{name}/Branch_0/Conv3d_0a_1x1")
        b1 = self.unit(self.unit(x, f"{name}/Branch_1/Conv3d_0a_1x1"), f"{name}/Branch_1/Conv3d_0b_3x3")
        b2 = self.unit(self.unit(x, f"{name}/Branch_2/Conv3d_0a_1x1"), f"{name}/Branch_2/Conv3d_0b_3x3")
        b3 = self.unit(self.max_pool(x, (3, 3, 3), (1, 1, 1)), f"{name}/Branch_3/Conv3d_0b_1x1")
        return torch.cat([b0, b1, b2, b3], 1)

    @torch.inference_mode()
    def logits(self, clip_thwc: np.ndarray) -> np.ndarray:
        """(T, 224, 224, 3) float in [−1, 1] → (400,) logits, in float64 throughout."""
        x = torch.from_numpy(np.asarray(clip_thwc, np.float64)).permute(3, 0, 1, 2)[None]
        x = self.unit(x, "Conv3d_1a_7x7", (2, 2, 2))
        x = self.max_pool(x, (1, 3, 3), (1, 2, 2))
        x = self.unit(x, "Conv3d_2b_1x1")
        x = self.unit(x, "Conv3d_2c_3x3")
        x = self.max_pool(x, (1, 3, 3), (1, 2, 2))
        for name, pool_after in MODULES:
            x = self.mixed(x, name)
            if pool_after == "pool3x3_s2":
                x = self.max_pool(x, (3, 3, 3), (2, 2, 2))
            elif pool_after == "pool2x2_s2":
                x = self.max_pool(x, (2, 2, 2), (2, 2, 2))
        x = F.avg_pool3d(x, (2, 7, 7), 1)
        x = self.unit(x, "Logits/Conv3d_0c_1x1", bn=False, relu=False)
        return x.squeeze(4).squeeze(3).mean(2)[0].numpy()
