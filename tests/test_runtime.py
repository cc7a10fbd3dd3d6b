"""The PyTorch runtime interprets the model directory's MXNet graph: same numbers as MXNet."""

import json
import shutil

import mxnet as mx
import numpy as np
import pytest

from clipwatch.errors import ModelUnavailable
from inference.decode import decode_clips
from inference.model import load_classifier
from inference.mxgraph import UnsupportedGraph, load_graph, read_params
from inference.preprocess import normalize_clips
from inference.runtime import resolve
from inference.sampling import ClipSampler

DEMO = "models/demo"


def clip_batch(media, card, clips=1) -> np.ndarray:
    """Real frames: the test segment decoded and normalized as the endpoint does it."""
    s = card.input
    decoded = decode_clips(media["segment2"].read_bytes(),
                           ClipSampler(s.frames, s.stride, clips), s.resize)
    return normalize_clips(decoded.frames, s.crop, s.mean, s.std)


def test_params_reader_matches_mxnet(tiny_model_dir):
    ours = read_params(tiny_model_dir / "model-0000.params")
    theirs = mx.nd.load(str(tiny_model_dir / "model-0000.params"))
    assert set(ours) == set(theirs) and len(ours) > 100  # I3D-R50: every conv, BN and the head
    for name, value in theirs.items():
        np.testing.assert_array_equal(ours[name], value.asnumpy())


@pytest.mark.parametrize("which", ["tiny_i3d_r50", "demo_i3d_tiny"])
def test_torch_fp32_equals_mxnet(which, tiny_model_dir, media):
    model_dir = tiny_model_dir if which == "tiny_i3d_r50" else DEMO
    ref = load_classifier(model_dir, runtime="mxnet")
    ours = load_classifier(model_dir, runtime="torch", precision="fp32")
    assert (ref.backend, ours.backend) == ("mxnet-fp32", "torch-fp32")
    x = clip_batch(media, ref.card, clips=2)
    ref_logits, ref_features = ref.infer(x)
    logits, features = ours.infer(x)
    scale = np.abs(ref_logits).max()
    np.testing.assert_allclose(logits, ref_logits, atol=1e-4 * scale, rtol=1e-4)
    # The features are the final layer's input: the I3D-R50's 2048-d pooled vector.
    assert features.shape == ref_features.shape == (2, 2048 if which == "tiny_i3d_r50" else 128)
    np.testing.assert_allclose(features, ref_features, atol=1e-4 * np.abs(ref_features).max())


def test_bf16_stays_close_to_fp32_on_the_demo_model(media):
    ref = load_classifier(DEMO, runtime="mxnet")
    bf16 = load_classifier(DEMO, runtime="torch", precision="bf16")
    x = clip_batch(media, ref.card, clips=3)
    a, b = ref.logits(x), bf16.logits(x)
    # bfloat16 keeps 8 bits of mantissa: logits within a few percent, same ranking of the top.
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()
    assert list(a.argmax(axis=1)) == list(b.argmax(axis=1))


def test_batchnorm_is_folded_and_dropout_dropped(tiny_model_dir):
    module = load_graph(tiny_model_dir)
    kinds = {type(m).__name__ for m in module.modules()}
    assert "Conv3d" in kinds and "Linear" in kinds
    assert not kinds & {"BatchNorm3d", "Dropout", "ChannelAffine"}


def test_an_operator_it_cannot_translate_is_named(tmp_path):
    symbol = json.loads(open(f"{DEMO}/model-symbol.json").read())
    for node in symbol["nodes"]:
        if node["op"] == "Activation":
            node["op"], node["attrs"] = "LRN", {"nsize": "3"}
    (tmp_path / "model-symbol.json").write_text(json.dumps(symbol))
    for f in ("model-0000.params", "classes.txt", "model.json"):
        shutil.copy(f"{DEMO}/{f}", tmp_path / f)
    with pytest.raises(UnsupportedGraph, match="operator 'LRN'.*--runtime mxnet"):
        load_classifier(tmp_path, runtime="torch")


def test_corrupt_params_are_a_clear_error(tmp_path):
    for f in ("model-symbol.json", "classes.txt", "model.json"):
        shutil.copy(f"{DEMO}/{f}", tmp_path / f)
    (tmp_path / "model-0000.params").write_bytes(open(f"{DEMO}/model-0000.params", "rb").read()[:5000])
    with pytest.raises(ModelUnavailable, match="cannot read .*model-0000.params: file ends early"):
        load_classifier(tmp_path, runtime="torch")


def test_runtime_choice():
    assert resolve("mxnet") == ("mxnet", "fp32")
    assert resolve("auto", gpu=True) == ("mxnet", "fp32")  # torch here is a CPU build
    assert resolve("torch", "fp32") == ("torch", "fp32")
    assert resolve("auto")[0] == "torch"
    with pytest.raises(ValueError, match="mxnet runtime serves fp32 only"):
        resolve("mxnet", "bf16")
    with pytest.raises(ValueError, match="unknown runtime 'onnx'"):
        resolve("onnx")


def test_unknown_runtime_is_a_model_error():
    with pytest.raises(ModelUnavailable, match="unknown precision 'int4'"):
        load_classifier(DEMO, precision="int4")


class _Fixed:
    """A runtime that answers given logits (and features = logits), counting its calls."""

    def __init__(self, logits):
        self.logits, self.calls = np.asarray(logits, np.float32), []
        self.name, self.precision, self.device = "fake", "bf16", "cpu"

    def forward(self, batch):
        self.calls.append(len(batch))
        rows = self.logits[: len(batch)] if len(self.logits) >= len(batch) else self.logits
        return rows.copy(), rows.copy()


def test_close_calls_are_settled_in_fp32_and_only_they():
    from inference.runtime import TieChecked

    fast = _Fixed([[2.0, 1.0, 0.0], [1.0, 0.9, 0.0], [0.0, 0.3, 0.45]])  # gaps 1.0, 0.1, 0.15
    exact = _Fixed([[0.0, 1.0, 0.5], [0.2, 0.0, 1.0]])  # the fp32 answers for rows 1 and 2
    checked = TieChecked(fast, exact, margin=0.5)
    logits, features = checked.forward(np.zeros((3, 1)))
    assert exact.calls == [2]  # one fp32 forward, of the two close rows only
    assert list(logits.argmax(1)) == [0, 1, 2]
    np.testing.assert_array_equal(features[1:], exact.logits)
    fast2, exact2 = _Fixed([[3.0, 1.0, 0.0]]), _Fixed([[0.0, 0.0, 9.0]])
    assert TieChecked(fast2, exact2, 0.5).forward(np.zeros((1, 1)))[0].argmax() == 0
    assert exact2.calls == []  # a clear call never pays for fp32


def test_openvino_runs_the_same_graph(tiny_model_dir, media):
    ov = load_classifier(tiny_model_dir, runtime="openvino", precision="fp32")
    ref = load_classifier(tiny_model_dir, runtime="mxnet")
    batch = clip_batch(media, ref.card, clips=2)
    (a, fa), (b, fb) = ov.infer(batch), ref.infer(batch)
    assert ov.backend == "openvino-fp32"
    np.testing.assert_allclose(a, b, atol=1e-3)
    np.testing.assert_allclose(fa, fb, atol=1e-3)
