"""`clipwatch package`: the artifacts the AWS stack takes, checked for what AWS will do with
them — SageMaker unpacks model.tar.gz into /opt/ml/model and serves it, Docker builds the image
context with the Dockerfile's own `pip install .`, and Lambda imports the handler from the zip
(tests/test_lambda.py runs it from the zip against the endpoint)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from clipwatch import packaging

ROOT = Path(__file__).resolve().parents[1]


def clipwatch(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "clipwatch.cli", "package", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_the_model_archive_unpacks_into_a_model_directory_the_endpoint_serves(tmp_path):
    from inference.model import load_classifier

    proc = clipwatch("model", "--model", str(ROOT / "models" / "demo"), "--out", str(tmp_path / "model.tar.gz"))
    assert proc.returncode == 0, proc.stderr
    assert "ModelDataUrl" in proc.stdout
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "opt-ml-model", filter="data")  # what SageMaker does
    assert set(names) == {"model-symbol.json", "model-0000.params", "classes.txt", "model.json", "model-int8.pt",
                          "reference.npz"}
    served = load_classifier(tmp_path / "opt-ml-model")
    original = load_classifier(ROOT / "models" / "demo")
    assert served.classes == original.classes and served.card.version == original.card.version
    assert served.routing_status == original.routing_status and served.reference is not None


def test_a_catalogue_model_is_packaged_by_name(kinetics_dir, tmp_path):
    out = packaging.model_archive("kinetics400", tmp_path / "k.tar.gz")
    with tarfile.open(out) as tar:
        assert {"model-symbol.json", "model-0000.params", "classes.txt", "model.json"} == set(tar.getnames())


def test_packaging_a_missing_model_says_what_is_missing(tmp_path):
    proc = clipwatch("model", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "m.tar.gz"))
    assert proc.returncode == 2 and "no model directory at" in proc.stderr
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "classes.txt").write_text("a\n")
    proc = clipwatch("model", "--model", str(tmp_path / "half"), "--out", str(tmp_path / "m.tar.gz"))
    assert proc.returncode == 2 and "no model-symbol.json, model-0000.params" in proc.stderr
    assert not (tmp_path / "m.tar.gz").exists()


def test_the_lambda_zip_holds_the_handler_the_stack_names_and_is_reproducible(tmp_path):
    from cfnlint.decode import cfn_yaml

    first, second = packaging.lambda_zip(tmp_path / "a.zip"), packaging.lambda_zip(tmp_path / "b.zip")
    assert first.read_bytes() == second.read_bytes()  # same code, same object in S3
    with zipfile.ZipFile(first) as z:
        assert sorted(z.namelist()) == ["inference/__init__.py", "inference/lambda_handler.py"]
    template = cfn_yaml.load(str(ROOT / "infra" / "cloudformation" / "clipwatch.yaml"))
    assert template["Resources"]["TriggerFunction"]["Properties"]["Handler"] == packaging.HANDLER


def test_the_image_context_is_what_the_dockerfile_copies_and_pip_builds_it(tmp_path):
    context = tmp_path / "image"
    proc = clipwatch("image", "--out", str(context))
    assert proc.returncode == 0, proc.stderr
    assert (context / "Dockerfile").read_text() == (ROOT / "infra" / "docker" / "Dockerfile").read_text()
    sources = packaging.dockerfile_sources()
    assert {"pyproject.toml", "requirements.lock", "clipwatch/", "inference/"} <= set(sources)
    for source in sources:
        assert (context / source).exists(), source
    assert not list(context.rglob("__pycache__"))
    # The Dockerfile's `pip install .` step, on the context alone (offline: this venv's setuptools).
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "wheel"), str(context)], capture_output=True, text=True,
                           timeout=600)
    assert wheel.returncode == 0, wheel.stderr[-2000:]
    with zipfile.ZipFile(next((tmp_path / "wheel").glob("clipwatch-*.whl"))) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert {"inference/server.py", "inference/predictor.py", "clipwatch/cli.py"} <= names
    assert "clipwatch = clipwatch.cli:main" in entry_points  # ENTRYPOINT ["clipwatch"]
    # A second run replaces its own context; it never deletes a folder it did not write.
    assert clipwatch("image", "--out", str(context)).returncode == 0
    (tmp_path / "mine").mkdir()
    refused = clipwatch("image", "--out", str(tmp_path / "mine"))
    assert refused.returncode == 2 and "is not a build context this command wrote" in refused.stderr
