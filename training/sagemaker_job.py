"""Launch clipwatch training as a SageMaker training job in script mode.

What: package the repository's code into ``sourcedir.tar.gz``, build the exact
``CreateTrainingJob`` request for AWS's prebuilt MXNet training container, and send it with
boto3. ``python -m training.sagemaker_job --dry-run ...`` prints the request instead.

Why by hand: sagemaker 3.x removed the framework estimators (``sagemaker.mxnet.MXNet``) that
used to build this request, and its ``ModelTrainer`` swaps the container's own launcher for an
entrypoint and driver channel of its own. ``training/sagemaker_train.py`` is written against the
classic script-mode contract that the MXNet container's sagemaker-training-toolkit implements,
so this module speaks that contract directly; as a plain dict the request can be printed,
reviewed and checked against botocore's service model in the tests. Only the image lookup is
borrowed from the SDK.

What the container does with the request: it downloads ``sagemaker_submit_directory`` into
``/opt/ml/code``, pip-installs the ``requirements.txt`` at its root, puts ``/opt/ml/code`` on
PYTHONPATH (so ``clipwatch``, ``inference`` and ``training`` import as packages) and runs
``python training/sagemaker_train.py --key value ...`` from there, with SM_HPS holding the
hyperparameters with their JSON types. The image runs Python 3.8, not the project's 3.11, so
the shipped packages must import there.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
import re
import sys
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import boto3

SOURCE_PACKAGES = ("clipwatch", "inference", "training")
SOURCE_TARBALL = "sourcedir.tar.gz"

# What the MXNet 1.9 training image lacks. It already has mxnet, numpy, gluoncv (0.8, which
# has i3d_resnet50_v1_custom) and boto3 (via the sagemaker SDK installed in it): pinning our
# numpy or mxnet here would make pip replace the builds the image was made with.
# eval-type-backport lets pydantic 2 evaluate `tuple[int, int]` / `X | None` annotations on the
# image's Python 3.8; pydantic picks it up on its own when it is installed.
CONTAINER_REQUIREMENTS = (
    "decord",
    "av",
    "pydantic>=2",
    "boto3",
    "prometheus-client",
    "rich",
    'eval-type-backport; python_version < "3.10"',
)

# Same bytes for the same source, so a bundle's hash says which code a job ran, whenever and
# wherever it was packaged. 1980-01-01 rather than 0, which some tools flag as suspicious.
FIXED_MTIME = 315532800

JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
S3_URI = re.compile(r"^s3://[^/]+(/.*)?$")
HYPERPARAMETER_MAX_CHARS = 2500  # CreateTrainingJob's limit on one encoded value
RESERVED_PREFIX = "sagemaker_"  # the toolkit's own hyperparameters; ours must not shadow them
CHECKPOINT_DIR = "/opt/ml/checkpoints"  # synced with CheckpointConfig.S3Uri by SageMaker


# --- the source bundle ---------------------------------------------------------------------


def package_source(repo_root: Path, out: Path) -> Path:
    """Write ``out/sourcedir.tar.gz``: the Python files of SOURCE_PACKAGES plus a generated
    requirements.txt, with sorted entries and fixed metadata so equal source gives equal bytes."""
    out.mkdir(parents=True, exist_ok=True)
    tarball = out / SOURCE_TARBALL
    entries = {path.relative_to(repo_root).as_posix(): path.read_bytes()
               for path in _source_files(repo_root)}
    entries["requirements.txt"] = "".join(f"{req}\n" for req in CONTAINER_REQUIREMENTS).encode()
    with tarball.open("wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=FIXED_MTIME) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            _add_file(tar, name, entries[name])
    return tarball


def _source_files(repo_root: Path) -> list[Path]:
    missing = [pkg for pkg in SOURCE_PACKAGES if not (repo_root / pkg / "__init__.py").is_file()]
    if missing:
        raise ValueError(f"{repo_root} lacks the package(s) {', '.join(missing)}")
    return [path for pkg in SOURCE_PACKAGES for path in (repo_root / pkg).rglob("*.py")
            if "__pycache__" not in path.parts]


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = FIXED_MTIME
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


# --- the request ---------------------------------------------------------------------------


def mxnet_training_image(region: str, instance_type: str, framework_version: str = "1.9.0",
                         py_version: str = "py38") -> str:
    """The AWS Deep Learning Container URI for MXNet training in ``region``: the gpu image for
    ml.p*/ml.g* instances, the cpu one otherwise (the SDK derives that from the family). The
    SDK's lookup reads the account/registry table it ships as JSON, so it works offline and
    follows AWS's per-region accounts (China and GovCloud differ); it raises ValueError for a
    region, version or instance family (Inferentia, Trainium) with no MXNet training image."""
    # Imported here: loading the SDK takes seconds, which --help and argument errors skip.
    from sagemaker.core import image_uris

    return image_uris.retrieve("mxnet", region=region, version=framework_version,
                               py_version=py_version, instance_type=instance_type,
                               image_scope="training")


def training_job_request(*, job_name: str, role_arn: str, region: str, source_s3_uri: str,
                         train_s3_uri: str, validation_s3_uri: str, output_s3_uri: str,
                         hyperparameters: dict, instance_type: str = "ml.g4dn.xlarge",
                         instance_count: int = 1, volume_gb: int = 50,
                         max_runtime_s: int = 6 * 3600,
                         entry_point: str = "training/sagemaker_train.py",
                         checkpoint_s3_uri: str | None = None, spot: bool = False,
                         max_wait_s: int | None = None) -> dict:
    """The keyword arguments for boto3's ``sagemaker.create_training_job``.

    ``spot`` turns on managed spot training; SageMaker then needs a MaxWaitTimeInSeconds of at
    least the runtime (it covers waiting for capacity plus running), which defaults to twice the
    runtime. Give ``checkpoint_s3_uri`` with spot so an interrupted job resumes instead of
    starting over."""
    _check_request_inputs(job_name=job_name, role_arn=role_arn, entry_point=entry_point,
                          s3_uris={"source_s3_uri": source_s3_uri, "train_s3_uri": train_s3_uri,
                                   "validation_s3_uri": validation_s3_uri,
                                   "output_s3_uri": output_s3_uri,
                                   "checkpoint_s3_uri": checkpoint_s3_uri})
    request = {
        "TrainingJobName": job_name,
        "RoleArn": role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": mxnet_training_image(region, instance_type),
            "TrainingInputMode": "File",
        },
        "HyperParameters": _encode_hyperparameters(hyperparameters) | _script_mode_parameters(
            job_name=job_name, region=region, entry_point=entry_point,
            source_s3_uri=source_s3_uri),
        "InputDataConfig": [_s3_channel("train", train_s3_uri),
                            _s3_channel("validation", validation_s3_uri)],
        "OutputDataConfig": {"S3OutputPath": output_s3_uri},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": instance_count,
                           "VolumeSizeInGB": volume_gb},
        "StoppingCondition": _stopping_condition(max_runtime_s, spot, max_wait_s),
        "EnableManagedSpotTraining": spot,
    }
    if checkpoint_s3_uri:
        request["CheckpointConfig"] = {"S3Uri": checkpoint_s3_uri, "LocalPath": CHECKPOINT_DIR}
    return request


def _check_request_inputs(*, job_name: str, role_arn: str, entry_point: str,
                          s3_uris: dict[str, str | None]) -> None:
    if not JOB_NAME.match(job_name):
        raise ValueError(f"job name {job_name!r}: use 1-63 letters, digits and hyphens, "
                         "starting and ending with a letter or digit")
    if not ROLE_ARN.match(role_arn):
        raise ValueError(f"role ARN {role_arn!r}: expected arn:aws:iam::<account>:role/<name>")
    for name, uri in s3_uris.items():
        if uri is not None and not S3_URI.match(uri):
            raise ValueError(f"{name} {uri!r}: expected an s3://bucket/key URI")
    path = Path(entry_point)
    if path.is_absolute() or ".." in path.parts or path.suffix != ".py":
        raise ValueError(f"entry point {entry_point!r}: expected a .py path inside the bundle, "
                         "relative to the repository root")


def _encode_hyperparameters(hyperparameters: dict) -> dict[str, str]:
    """JSON-encode each value, as the SDK does: the API takes strings only, and the toolkit
    decodes them back into SM_HPS with their types (10 stays an int, "10" a string)."""
    encoded = {}
    for key, value in hyperparameters.items():
        if str(key).startswith(RESERVED_PREFIX):
            raise ValueError(f"hyperparameter {key!r}: the {RESERVED_PREFIX}* names are "
                             "reserved for the training container")
        try:
            text = json.dumps(value)
        except TypeError as e:
            raise ValueError(f"hyperparameter {key!r}: not JSON-serializable ({e})") from None
        if len(text) > HYPERPARAMETER_MAX_CHARS:
            raise ValueError(f"hyperparameter {key!r}: {len(text)} characters encoded, "
                             f"the API allows {HYPERPARAMETER_MAX_CHARS}")
        encoded[str(key)] = text
    return encoded


def _script_mode_parameters(*, job_name: str, region: str, entry_point: str,
                            source_s3_uri: str) -> dict[str, str]:
    """What tells the framework container to run our code (names from the training toolkit)."""
    return {
        "sagemaker_program": json.dumps(entry_point),
        "sagemaker_submit_directory": json.dumps(source_s3_uri),
        "sagemaker_region": json.dumps(region),
        "sagemaker_job_name": json.dumps(job_name),
        "sagemaker_container_log_level": json.dumps(logging.INFO),
    }


def _s3_channel(name: str, s3_uri: str) -> dict:
    return {
        "ChannelName": name,
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": s3_uri,
                                        "S3DataDistributionType": "FullyReplicated"}},
    }


def _stopping_condition(max_runtime_s: int, spot: bool, max_wait_s: int | None) -> dict:
    if not spot:
        if max_wait_s is not None:
            raise ValueError("max_wait_s applies to managed spot training only: set spot=True")
        return {"MaxRuntimeInSeconds": max_runtime_s}
    max_wait_s = 2 * max_runtime_s if max_wait_s is None else max_wait_s
    if max_wait_s < max_runtime_s:
        raise ValueError(f"max_wait_s ({max_wait_s}) must be at least max_runtime_s "
                         f"({max_runtime_s}): it includes the run itself")
    return {"MaxRuntimeInSeconds": max_runtime_s, "MaxWaitTimeInSeconds": max_wait_s}


# --- sending it ----------------------------------------------------------------------------


def launch(request: dict, client=None) -> str:
    """Create the training job and return its ARN."""
    if client is None:
        # The job must live in the region whose ECR image it runs, which the request names.
        region = json.loads(request["HyperParameters"]["sagemaker_region"])
        client = boto3.client("sagemaker", region_name=region)
    return client.create_training_job(**request)["TrainingJobArn"]


def upload_source(tarball: Path, s3_uri: str, region: str) -> None:
    bucket, _, key = s3_uri.removeprefix("s3://").partition("/")
    boto3.client("s3", region_name=region).upload_file(str(tarball), bucket, key)


# --- command line --------------------------------------------------------------------------

EXAMPLE = """\
example:
  python -m training.sagemaker_job \\
      --role-arn arn:aws:iam::123456789012:role/SageMakerTraining --region us-east-1 \\
      --bucket my-ml-bucket --train s3://my-ml-bucket/clips/train \\
      --validation s3://my-ml-bucket/clips/validation \\
      --hp epochs=30 --hp lr=0.001 --hp 'classes=["walking","running"]' --spot --dry-run

Source goes to s3://BUCKET/PREFIX/JOB/source/sourcedir.tar.gz, the model to
s3://BUCKET/PREFIX/output/JOB/. Drop --dry-run to upload and start the job.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.sagemaker_job", epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Package clipwatch and start its training as a SageMaker training job "
                    "in AWS's MXNet training container (script mode).")
    p.add_argument("--role-arn", required=True, help="IAM role the job runs as")
    p.add_argument("--region", default=boto3.session.Session().region_name,
                   help="AWS region (default: from the AWS configuration)")
    p.add_argument("--bucket", required=True, help="S3 bucket for the source and the output")
    p.add_argument("--prefix", default="clipwatch/training", help="key prefix in --bucket")
    p.add_argument("--train", required=True, help="S3 prefix of the training clips")
    p.add_argument("--validation", required=True, help="S3 prefix of the validation clips")
    p.add_argument("--job-name", help="default: clipwatch-i3d-<UTC time>")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                   help="hyperparameter; VALUE is read as JSON when it parses, else as text")
    p.add_argument("--instance-type", default="ml.g4dn.xlarge")
    p.add_argument("--instance-count", type=int, default=1)
    p.add_argument("--volume-gb", type=int, default=50)
    p.add_argument("--max-runtime-s", type=int, default=6 * 3600)
    p.add_argument("--spot", action="store_true", help="managed spot training")
    p.add_argument("--max-wait-s", type=int, help="with --spot (default: twice the runtime)")
    p.add_argument("--checkpoint-s3-uri",
                   help="default with --spot: s3://BUCKET/PREFIX/JOB/checkpoints")
    p.add_argument("--entry-point", default="training/sagemaker_train.py")
    p.add_argument("--repo-root", type=Path, default=Path(__file__).resolve().parents[1])
    p.add_argument("--dry-run", action="store_true",
                   help="package locally and print the request; send nothing to AWS")
    return p


def parse_hyperparameters(pairs: list[str]) -> dict:
    hyperparameters = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--hp {pair!r}: expected KEY=VALUE")
        try:
            hyperparameters[key] = json.loads(text)
        except json.JSONDecodeError:
            hyperparameters[key] = text
    return hyperparameters


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.region:
        parser.error("--region is required: no region in the AWS configuration")
    try:
        request = request_from_args(args)
        with tempfile.TemporaryDirectory() as tmp:
            tarball = package_source(args.repo_root, Path(tmp))
            _require_entry_point(tarball, args.entry_point)
            if args.dry_run:
                print(json.dumps(request, indent=2))
                return 0
            source_s3_uri = json.loads(request["HyperParameters"]["sagemaker_submit_directory"])
            upload_source(tarball, source_s3_uri, args.region)
    except ValueError as e:
        parser.error(str(e))
    print(launch(request))
    return 0


def request_from_args(args: argparse.Namespace) -> dict:
    """The request for the parsed command line, with the S3 layout described in EXAMPLE."""
    job_name = args.job_name or f"clipwatch-i3d-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    base = f"s3://{args.bucket}/{args.prefix.strip('/')}"
    # Spot capacity can be reclaimed at any time: without checkpoints the job starts over.
    checkpoint = args.checkpoint_s3_uri or (f"{base}/{job_name}/checkpoints" if args.spot
                                            else None)
    return training_job_request(
        job_name=job_name, role_arn=args.role_arn, region=args.region,
        source_s3_uri=f"{base}/{job_name}/source/{SOURCE_TARBALL}", train_s3_uri=args.train,
        validation_s3_uri=args.validation, output_s3_uri=f"{base}/output",
        hyperparameters=parse_hyperparameters(args.hp), instance_type=args.instance_type,
        instance_count=args.instance_count, volume_gb=args.volume_gb,
        max_runtime_s=args.max_runtime_s, entry_point=args.entry_point,
        checkpoint_s3_uri=checkpoint, spot=args.spot, max_wait_s=args.max_wait_s)


def _require_entry_point(tarball: Path, entry_point: str) -> None:
    """Fail here rather than minutes into a billed job when the script is not in the bundle."""
    with tarfile.open(tarball) as tar:
        if entry_point not in tar.getnames():
            raise ValueError(f"entry point {entry_point!r} is not in the packaged source "
                             f"({', '.join(SOURCE_PACKAGES)})")


if __name__ == "__main__":
    sys.exit(main())
