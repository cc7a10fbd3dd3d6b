"""Training round trip on a tiny synthetic dataset: synth → train → export → the endpoint's
own loader and pipeline; list-file errors; resume; script mode; evaluation + calibration."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from training.datasets import DatasetError, load_split, read_list_file
from training.synth import ACTIVITIES, HFLIP, make_dataset
from training.train import TINY_INPUT, TrainConfig, TrainingError, train


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    make_dataset(root, clips_per_class=3, seed=5, size=(128, 72), seconds=1.2, progress=False)
    (root / "flip.json").write_text(json.dumps(HFLIP))
    return root


@pytest.fixture(scope="session")
def trained(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "demo"
    return train(TrainConfig(data=dataset, out=out, epochs=1, batch_size=8, progress=False))


def test_round_trip_train_export_serve(trained, dataset):
    from clipwatch.blobs import SegmentReader
    from clipwatch.records import InvocationRequest
    from inference.model import load_classifier
    from inference.predictor import Endpoint

    names = {p.name for p in trained.iterdir()}
    assert {"model-symbol.json", "model-0000.params", "classes.txt", "model.json", "model.tar.gz"} <= names
    card = json.loads((trained / "model.json").read_text())
    assert card["architecture"] == "i3d_tiny" and card["input"]["frames"] == TINY_INPUT.frames
    assert card["metrics"]["epochs_run"] == 1 and 0 <= card["metrics"]["val_top1"] <= 1
    classifier = load_classifier(trained)
    assert classifier.classes == list(ACTIVITIES)
    endpoint = Endpoint(classifier, SegmentReader(allowed_dirs=[dataset]), store=None)
    clip = next((dataset / "rotating").iterdir())
    p = endpoint.invoke(InvocationRequest(uri=str(clip)))
    assert p.label in ACTIVITIES and len(p.frames[0]) == TINY_INPUT.frames


def test_resume_continues_and_refuses_another_class_count(trained, dataset, tmp_path):
    out = tmp_path / "m"
    shutil.copytree(trained, out)
    resumed = train(TrainConfig(data=dataset, out=out, epochs=2, batch_size=8, resume=True, progress=False))
    metrics = json.loads((resumed / "model.json").read_text())["metrics"]
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    fewer = tmp_path / "fewer"
    shutil.copytree(dataset, fewer)
    (fewer / "classes.txt").write_text("\n".join(ACTIVITIES[:-1]) + "\n")
    for split in ("train", "val"):
        lines = [ln for ln in (fewer / f"{split}.txt").read_text().splitlines() if not ln.endswith(" 6")]
        (fewer / f"{split}.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(TrainingError, match="trained for 7 classes.*the data has 6"):
        train(TrainConfig(data=fewer, out=out, epochs=3, resume=True, progress=False))


def test_corrupt_video_is_skipped_and_reported(dataset, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(dataset, data)
    (data / "bad.mp4").write_bytes(b"\x00" * 5000)
    with (data / "train.txt").open("a") as f:
        f.write("bad.mp4 36 2\n")
    model = train(TrainConfig(data=data, out=tmp_path / "m", epochs=1, batch_size=8, progress=False))
    skipped = json.loads((model / "model.json").read_text())["metrics"]["skipped_clips"]
    assert list(skipped) == [f"{data / 'train.txt'}:{len((data / 'train.txt').read_text().splitlines())}"]
    assert "not decodable" in next(iter(skipped.values()))


@pytest.mark.parametrize("line,message", [
    ("missing.mp4 36 0", "video .*missing.mp4 does not exist"),
    ("{clip} 36 9", "label 9 is outside 0..6"),
    ("{clip} 0 1", ".*rotating_0001.mp4 has 0 frames"),
    ("{clip} 36", "expected '<path> <num_frames> <label>'"),
    ("{clip} many 1", "malformed line"),
    ("{clip} 0.5 1.0 dancing", "unknown label 'dancing'"),
    ("{clip} 2.0 1.0 rotating", "segment 2.0–1.0 s is empty or negative"),
])
def test_list_file_errors_name_file_and_line(dataset, tmp_path, line, message):
    clip = next((dataset / "rotating").iterdir()).relative_to(dataset)
    list_file = dataset / "bad_list.txt"
    list_file.write_text("# a comment\n" + f"{clip} 36 3\n" + line.format(clip=clip) + "\n")
    try:
        with pytest.raises(DatasetError, match=rf"bad_list.txt:3: {message}"):
            read_list_file(list_file, list(ACTIVITIES))
    finally:
        list_file.unlink()


def test_reviewed_segments_sample_inside_their_window(dataset):
    """The review export's form: `<clip> <start s> <end s> <label>`."""
    from training.datasets import ClipDataset

    clip = next((dataset / "bouncing").iterdir()).relative_to(dataset)
    list_file = dataset / "reviewed.txt"
    list_file.write_text(f"{clip} 0.0 1.1 bouncing\n")
    try:
        (record,) = read_list_file(list_file, list(ACTIVITIES))
    finally:
        list_file.unlink()
    assert record.window == (0.0, 1.1) and record.label == ACTIVITIES.index("bouncing")
    x, y = ClipDataset([record], TINY_INPUT, train=True, flip_map={}).load(0)
    assert x.shape == (3, TINY_INPUT.frames, TINY_INPUT.crop, TINY_INPUT.crop) and y == record.label


def test_class_folders_without_list_files(dataset, tmp_path):
    folders = tmp_path / "folders"
    for c in ("rotating", "bouncing"):
        shutil.copytree(dataset / c, folders / c)
    classes, train_records = load_split(folders, "train")
    _, val_records = load_split(folders, "val")
    assert classes == ["bouncing", "rotating"]
    assert len(train_records) == 6 and val_records == []  # every fifth clip: none among three


def test_sagemaker_script_mode(dataset, tmp_path):
    from training import sagemaker_train

    env = {"SM_CHANNEL_TRAIN": str(dataset), "SM_CHANNEL_VALIDATION": str(dataset),
           "SM_MODEL_DIR": str(tmp_path / "model"), "SM_HPS": json.dumps({"epochs": 1, "batch_size": 8})}
    # The container passes hyperparameters as arguments too, including ones this script lacks.
    out = sagemaker_train.main(["--epochs", "1", "--sagemaker_program", "x.py"], env)
    assert (out / "model-0000.params").is_file() and (out / "checkpoints" / "state.json").is_file()


def test_evaluate_calibrates_and_plots(trained, dataset, tmp_path):
    from training.evaluate import evaluate

    model = tmp_path / "m"
    shutil.copytree(trained, model)
    result = evaluate(model, dataset, split="test")
    assert result["clips"] == 7 and 0 <= result["top1"] <= 1 and result["temperature"] > 0
    for name in ("evaluation.json", "confusion.png", "reliability.png"):
        assert (model / "evaluation" / name).stat().st_size > 0
    card = json.loads((model / "model.json").read_text())
    assert card["temperature"] == pytest.approx(result["temperature"])
    assert card["metrics"]["evaluation"]["ece_after"] == pytest.approx(result["ece_after"])
    assert np.isfinite(result["ece_before"])


def test_front_ends_share_trainconfigs_defaults(tmp_path):
    from inference.model import InputSpec
    from training.train import make_config

    cfg = make_config(tmp_path, tmp_path / "m", {"epochs": None, "lr": 0.01, "data": "ignored"})
    assert (cfg.epochs, cfg.lr, cfg.base, cfg.spec) == (TrainConfig.epochs, 0.01, "i3d_tiny", TINY_INPUT)
    assert make_config(tmp_path, tmp_path, {"base": "i3d_resnet50_v1_kinetics400"}).spec == InputSpec()


def test_cli_train_and_evaluate(dataset, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "cli-model"
    run = [sys.executable, "-m", "clipwatch.cli"]
    proc = subprocess.run(run + ["train", "--data", str(dataset), "--out", str(out), "--epochs", "1",
                                 "--batch-size", "8"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "model.json").read_text())["metrics"]["epochs_run"] == 1
    proc = subprocess.run(run + ["evaluate", "--model", str(out), "--data", str(dataset)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and json.loads(proc.stdout)["clips"] == 7
    proc = subprocess.run(run + ["train", "--data", str(tmp_path / "nowhere"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "nowhere: no such dataset folder" in proc.stderr
