import numpy as np
import pytest

from clipwatch.errors import ModelUnavailable
from inference.model import load_classifier


def test_model_directory_round_trip(tiny_model_dir, tiny_classifier):
    names = sorted(p.name for p in tiny_model_dir.iterdir())
    assert names == ["classes.txt", "model-0000.params", "model-symbol.json", "model.json"]
    c = tiny_classifier
    assert c.card.version == "tiny-1" and c.card.input.frames == 8
    assert c.classes == ["walking", "running", "jumping", "waving"]
    assert c.device == "cpu"  # no GPU on this machine; chosen at load time
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 64, 64)).astype(np.float32)
    a, b = c.logits(x), load_classifier(tiny_model_dir).logits(x)
    assert a.shape == (1, 4)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_seed_layout_without_model_json_loads_with_the_i3d_defaults(tiny_model_dir, tmp_path):
    for f in ("model-symbol.json", "model-0000.params", "classes.txt"):
        (tmp_path / f).symlink_to(tiny_model_dir / f)
    c = load_classifier(tmp_path)
    assert c.card.input.frames == 32 and c.card.input.crop == 224
    assert c.card.version.endswith("-seed")


def test_zoo_weights_that_cannot_be_downloaded_name_the_cache(tmp_path, monkeypatch):
    # No network here: the real download fails, and the message says where the file must go.
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")
    with pytest.raises(ModelUnavailable, match=f"i3d_resnet50_v1_kinetics400 into {tmp_path}"):
        load_classifier("i3d_resnet50_v1_kinetics400", cache_dir=tmp_path)


def test_incomplete_directory(tmp_path):
    (tmp_path / "classes.txt").write_text("a\n")
    with pytest.raises(ModelUnavailable, match="lacks model-symbol.json, model-0000.params"):
        load_classifier(tmp_path)


def test_unknown_source(tmp_path):
    with pytest.raises(ModelUnavailable, match="no model directory"):
        load_classifier(tmp_path / "nope")
