"""int8: `clipwatch quantize` calibrates on a dataset, checks against fp32 on another split, and
the endpoint serves the module only when that check passed."""

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from clipwatch.cli import main as cli
from clipwatch.errors import ModelUnavailable
from inference import quantize
from inference.decode import decode_clips
from inference.model import load_classifier
from inference.preprocess import normalize_clips
from inference.runtime import cpu_has_native_bf16
from inference.sampling import ClipSampler
from training.synth import make_dataset

DEMO = Path("models/demo")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth-int8")
    make_dataset(root, clips_per_class=4, seed=11, size=(128, 72), seconds=1.2, progress=False)
    return root


@pytest.fixture
def demo_copy(tmp_path) -> Path:
    """The demo model's fp32 graph, without any int8 module."""
    out = tmp_path / "demo"
    out.mkdir()
    for name in ("model-symbol.json", "model-0000.params", "classes.txt"):
        shutil.copy(DEMO / name, out / name)
    card = json.loads((DEMO / "model.json").read_text())
    card.pop("int8", None)
    (out / "model.json").write_text(json.dumps(card))
    return out


def real_clips(media, card) -> np.ndarray:
    s = card.input
    decoded = decode_clips(media["segment2"].read_bytes(), ClipSampler(s.frames, s.stride, 3), s.resize)
    return normalize_clips(decoded.frames, s.crop, s.mean, s.std)


def test_quantize_checks_saves_and_is_served_by_default(demo_copy, dataset, media, capsys):
    assert load_classifier(demo_copy).backend != "torch-int8"  # nothing calibrated yet
    assert cli(["quantize", "--model", str(demo_copy), "--data", str(dataset), "--clips", "14"]) == 0
    result = json.loads(capsys.readouterr().out)
    record = json.loads((demo_copy / "model.json").read_text())["int8"]
    assert result["saved"] and record["calibration_clips"] == 14 and record["checked_clips"] == 7
    assert record["agreement"] >= quantize.MIN_AGREEMENT and (demo_copy / "model-int8.pt").is_file()
    with tarfile.open(demo_copy / "model.tar.gz") as tar:  # SageMaker gets it too
        assert "model-int8.pt" in tar.getnames()

    served = load_classifier(demo_copy)
    expected = ("torch-int8" if quantize.cpu_has_int8_dot_product()
                else "torch-bf16" if cpu_has_native_bf16() else "torch-fp32")
    assert served.backend == expected
    int8 = load_classifier(demo_copy, precision="int8")
    fp32 = load_classifier(demo_copy, runtime="torch", precision="fp32")
    x = real_clips(media, fp32.card)
    (a, fa), (b, fb) = fp32.infer(x), int8.infer(x)
    assert fb.shape == fa.shape and list(a.argmax(1)) == list(b.argmax(1))
    assert np.abs(a - b).max() < 0.2 * np.abs(a).max()


def test_a_module_under_the_agreement_bar_is_not_saved_unless_forced(demo_copy, dataset, monkeypatch, capsys):
    monkeypatch.setattr(quantize, "MIN_AGREEMENT", 1.01)  # unreachable: every check "fails"
    assert cli(["quantize", "--model", str(demo_copy), "--data", str(dataset), "--clips", "7"]) == 1
    assert "not saved" in capsys.readouterr().err and not (demo_copy / "model-int8.pt").exists()

    assert cli(["quantize", "--model", str(demo_copy), "--data", str(dataset), "--clips", "7", "--force"]) == 0
    assert not quantize.ready(demo_copy)  # saved, but auto will not serve it
    assert load_classifier(demo_copy).backend != "torch-int8"
    assert load_classifier(demo_copy, precision="int8").backend == "torch-int8"  # asked for


def test_int8_without_a_module_names_the_command(demo_copy):
    with pytest.raises(ModelUnavailable, match="clipwatch quantize --model"):
        load_classifier(demo_copy, precision="int8")


def test_calibration_takes_every_class_in_turn():
    from training.int8 import spread_over_classes

    labels = [0, 0, 0, 0, 1, 1, 2]
    assert spread_over_classes(labels, 5) == [0, 4, 6, 1, 5]
    assert spread_over_classes(labels, 99) == [0, 4, 6, 1, 5, 2, 3]
