"""training/sagemaker_job.py: the CreateTrainingJob request is checked against botocore's own
service model (through Stubber, which validates parameters before answering), the image URIs
come from the SDK's offline tables, and the source bundle is inspected as the container would
unpack it. Nothing is sent to AWS."""

from __future__ import annotations

import ast
import json
import os
import tarfile
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber

from training.sagemaker_job import (
    launch,
    main,
    mxnet_training_image,
    package_source,
    training_job_request,
)

REPO = Path(__file__).resolve().parents[1]
ARN = "arn:aws:sagemaker:us-east-1:123456789012:training-job/x"
JOB_ARGS = dict(
    job_name="clipwatch-i3d-test",
    role_arn="arn:aws:iam::123456789012:role/service-role/SageMakerTraining",
    region="us-east-1",
    source_s3_uri="s3://ml-bucket/clipwatch/source/sourcedir.tar.gz",
    train_s3_uri="s3://ml-bucket/clips/train",
    validation_s3_uri="s3://ml-bucket/clips/validation",
    output_s3_uri="s3://ml-bucket/clipwatch/output",
    hyperparameters={"epochs": 30, "lr": 0.001, "classes": ["walking", "running"],
                     "pretrained": True, "arch": "i3d_resnet50_v1_custom"},
)


def request(**overrides) -> dict:
    return training_job_request(**{**JOB_ARGS, **overrides})


@pytest.fixture
def sagemaker_client():
    # Real client and real service model; Stubber stops the call before it leaves the process.
    return boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x")


def stubbed_launch(client, req: dict) -> str:
    with Stubber(client) as stub:
        stub.add_response("create_training_job", {"TrainingJobArn": ARN}, expected_params=req)
        arn = launch(req, client)
        stub.assert_no_pending_responses()
    return arn


@pytest.mark.parametrize("overrides", [
    {},
    {"spot": True, "checkpoint_s3_uri": "s3://ml-bucket/clipwatch/checkpoints"},
    {"instance_type": "ml.c5.2xlarge", "instance_count": 2, "spot": True, "max_wait_s": 86400},
])
def test_request_passes_botocore_validation(sagemaker_client, overrides):
    assert stubbed_launch(sagemaker_client, request(**overrides)) == ARN


def test_botocore_validation_can_fail(sagemaker_client):
    broken = request()
    broken["HyperParameters"]["epochs"] = 30  # the API takes strings only
    with pytest.raises(ParamValidationError, match="HyperParameters"):
        stubbed_launch(sagemaker_client, broken)


def test_hyperparameters_are_json_strings_with_script_mode_keys():
    hps = request()["HyperParameters"]
    assert all(isinstance(v, str) for v in hps.values())
    decoded = {k: json.loads(v) for k, v in hps.items()}
    assert {k: decoded[k] for k in JOB_ARGS["hyperparameters"]} == JOB_ARGS["hyperparameters"]
    assert decoded["sagemaker_program"] == "training/sagemaker_train.py"
    assert decoded["sagemaker_submit_directory"] == JOB_ARGS["source_s3_uri"]
    assert decoded["sagemaker_region"] == "us-east-1"
    assert decoded["sagemaker_container_log_level"] == 20


def test_request_shape():
    req = request(checkpoint_s3_uri="s3://ml-bucket/ckpt")
    assert req["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert [c["ChannelName"] for c in req["InputDataConfig"]] == ["train", "validation"]
    sources = [c["DataSource"]["S3DataSource"] for c in req["InputDataConfig"]]
    assert {(s["S3DataType"], s["S3DataDistributionType"]) for s in sources} == {
        ("S3Prefix", "FullyReplicated")}
    assert req["CheckpointConfig"] == {"S3Uri": "s3://ml-bucket/ckpt",
                                       "LocalPath": "/opt/ml/checkpoints"}
    assert req["EnableManagedSpotTraining"] is False
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 6 * 3600}
    assert "CheckpointConfig" not in request()


def test_spot_sets_max_wait():
    req = request(spot=True, max_runtime_s=3600)
    assert req["EnableManagedSpotTraining"] is True
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600,
                                        "MaxWaitTimeInSeconds": 7200}
    assert request(spot=True, max_runtime_s=3600, max_wait_s=3600)[
        "StoppingCondition"]["MaxWaitTimeInSeconds"] == 3600


@pytest.mark.parametrize("overrides, message", [
    ({"spot": True, "max_runtime_s": 3600, "max_wait_s": 600}, "at least max_runtime_s"),
    ({"max_wait_s": 7200}, "spot"),
])
def test_bad_spot_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        request(**overrides)


@pytest.mark.parametrize("instance_type, processor", [
    ("ml.g4dn.xlarge", "gpu"), ("ml.p3.2xlarge", "gpu"), ("ml.g5.12xlarge", "gpu"),
    ("ml.m5.xlarge", "cpu"), ("ml.c5.2xlarge", "cpu"),
])
def test_image_follows_instance_type(instance_type, processor):
    uri = mxnet_training_image("us-east-1", instance_type)
    assert uri == ("763104351884.dkr.ecr.us-east-1.amazonaws.com/"
                   f"mxnet-training:1.9.0-{processor}-py38")
    assert request(instance_type=instance_type)["AlgorithmSpecification"][
        "TrainingImage"] == uri


def test_image_registry_is_regional():
    assert mxnet_training_image("cn-north-1", "ml.m5.xlarge").startswith(
        "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/mxnet-training:")


@pytest.mark.parametrize("overrides, message", [
    ({"job_name": "bad_name"}, "job name"),
    ({"job_name": "-leading-hyphen"}, "job name"),
    ({"job_name": "x" * 64}, "job name"),
    ({"train_s3_uri": "/data/train"}, "train_s3_uri"),
    ({"validation_s3_uri": "https://ml-bucket.s3.amazonaws.com/v"}, "validation_s3_uri"),
    ({"output_s3_uri": "s3://"}, "output_s3_uri"),
    ({"source_s3_uri": "ml-bucket/src.tar.gz"}, "source_s3_uri"),
    ({"checkpoint_s3_uri": "file:///tmp/ckpt"}, "checkpoint_s3_uri"),
    ({"role_arn": "SageMakerTraining"}, "role ARN"),
    ({"entry_point": "/opt/ml/code/train.py"}, "entry point"),
    ({"hyperparameters": {"sagemaker_program": "x.py"}}, "reserved"),
    ({"hyperparameters": {"when": object()}}, "JSON"),
    ({"region": "mars-1"}, "region"),
])
def test_bad_inputs_raise_value_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        request(**overrides)


def members(tarball: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(tarball) as tar:
        return tar.getmembers()


def test_package_source_holds_code_and_requirements(tmp_path):
    tarball = package_source(REPO, tmp_path)
    assert tarball == tmp_path / "sourcedir.tar.gz"
    names = [m.name for m in members(tarball)]
    for expected in ["clipwatch/records.py", "inference/predictor.py",
                     "training/sagemaker_job.py", "requirements.txt"]:
        assert expected in names
    assert names == sorted(names)
    assert not any("__pycache__" in n or not n.endswith((".py", ".txt")) for n in names)
    with tarfile.open(tarball) as tar:
        requirements = tar.extractfile("requirements.txt").read().decode().splitlines()
    packages = {line.split(";")[0].split(">")[0].split("=")[0] for line in requirements}
    # eval-type-backport: without it pydantic cannot evaluate clipwatch.records' `list[str]`
    # annotations on the image's Python 3.8, and the import fails.
    assert {"decord", "av", "pydantic", "boto3", "prometheus-client", "rich",
            "eval-type-backport"} <= packages
    assert not packages & {"mxnet", "numpy"}  # the image's own builds must stay


def test_bundle_parses_as_python_38(tmp_path):
    """The MXNet training image runs Python 3.8, where newer syntax (match, parenthesized
    context managers) fails at import. ast's feature_version checks grammar only, best effort:
    runtime features (str.removeprefix, `list[int]` outside annotations) slip through."""
    with tarfile.open(package_source(REPO, tmp_path)) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".py"):
                ast.parse(tar.extractfile(member).read(), filename=member.name,
                          feature_version=(3, 8))


@pytest.fixture
def tiny_repo(tmp_path) -> Path:
    """A repository with only the files the bundle rules care about, and some it must skip."""
    root = tmp_path / "repo"
    for name in ["clipwatch/__init__.py", "clipwatch/store/__init__.py",
                 "inference/__init__.py", "training/__init__.py",
                 "training/sagemaker_train.py", "clipwatch/__pycache__/records.cpython-311.pyc",
                 "clipwatch/__pycache__/stray.py", "inference/notes.md", "tests/test_x.py"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n")
    return root


def test_package_source_skips_caches_and_non_python(tiny_repo, tmp_path):
    infos = members(package_source(tiny_repo, tmp_path))
    assert [m.name for m in infos] == [
        "clipwatch/__init__.py", "clipwatch/store/__init__.py", "inference/__init__.py",
        "requirements.txt", "training/__init__.py", "training/sagemaker_train.py"]
    assert {(m.mtime, m.mode, m.uid, m.gid) for m in infos} == {(315532800, 0o644, 0, 0)}


def test_package_source_is_reproducible(tiny_repo, tmp_path):
    assert package_source(REPO, tmp_path / "a").read_bytes() == package_source(
        REPO, tmp_path / "b").read_bytes()
    first = package_source(tiny_repo, tmp_path / "c").read_bytes()
    os.utime(tiny_repo / "training" / "sagemaker_train.py", (2_000_000_000, 2_000_000_000))
    assert package_source(tiny_repo, tmp_path / "d").read_bytes() == first


def test_package_source_needs_the_packages(tmp_path):
    with pytest.raises(ValueError, match="training"):
        package_source(REPO / "clipwatch", tmp_path)


CLI = ["--role-arn", JOB_ARGS["role_arn"], "--region", "eu-west-1", "--bucket", "ml-bucket",
       "--train", "s3://ml-bucket/clips/train", "--validation", "s3://ml-bucket/clips/val",
       "--job-name", "cli-job", "--hp", "epochs=3", "--hp", 'classes=["a","b"]',
       "--hp", "arch=i3d", "--dry-run"]


def test_main_dry_run_prints_the_request(tiny_repo, capsys, sagemaker_client):
    assert main([*CLI, "--repo-root", str(tiny_repo), "--spot"]) == 0
    req = json.loads(capsys.readouterr().out)
    hps = req["HyperParameters"]
    assert (json.loads(hps["epochs"]), json.loads(hps["classes"]), json.loads(hps["arch"])) == (
        3, ["a", "b"], "i3d")
    assert json.loads(hps["sagemaker_submit_directory"]) == (
        "s3://ml-bucket/clipwatch/training/cli-job/source/sourcedir.tar.gz")
    assert req["CheckpointConfig"]["S3Uri"] == (
        "s3://ml-bucket/clipwatch/training/cli-job/checkpoints")
    assert ".eu-west-1." in req["AlgorithmSpecification"]["TrainingImage"]
    assert stubbed_launch(sagemaker_client, req) == ARN


def test_main_rejects_a_missing_entry_point(tiny_repo, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*CLI, "--repo-root", str(tiny_repo), "--entry-point", "training/nope.py"])
    assert exit_info.value.code == 2
    assert "training/nope.py" in capsys.readouterr().err
