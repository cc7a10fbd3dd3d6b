"""`clipwatch package model|lambda|image`: the artifacts the AWS stack takes (clipwatch.packaging)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _package(args) -> int:
    from clipwatch import packaging
    from clipwatch.errors import ModelUnavailable

    try:
        if args.artifact == "model":
            out = packaging.model_archive(args.model, Path(args.out))
            then = f"aws s3 cp {out} s3://BUCKET/models/model.tar.gz   # → ModelDataUrl"
        elif args.artifact == "lambda":
            out = packaging.lambda_zip(Path(args.out))
            then = (f"aws s3 cp {out} s3://BUCKET/lambda/clipwatch-trigger.zip   "
                    f"# → LambdaCodeBucket, LambdaCodeKey (handler {packaging.HANDLER})")
        else:
            out = packaging.image_context(Path(args.out))
            then = f"docker build -t ACCOUNT.dkr.ecr.REGION.amazonaws.com/clipwatch:TAG {out}   # then docker push"
    except (FileNotFoundError, FileExistsError, ModelUnavailable) as exc:
        print(f"clipwatch package {args.artifact}: {exc}", file=sys.stderr)
        return 2
    print(f"{out}\nnext: {then}")
    return 0


DEFAULT_OUT = {"model": "build/model.tar.gz", "lambda": "build/clipwatch-trigger.zip", "image": "build/image"}


def register(sub) -> None:
    package = sub.add_parser(
        "package", help="build the AWS stack's artifacts: model.tar.gz, the Lambda zip, the serving image's context",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="What infra/cloudformation/clipwatch.yaml takes: `model` → ModelDataUrl (a model "
                    "directory or fetched catalogue model as SageMaker unpacks it into /opt/ml/model), "
                    "`lambda` → LambdaCodeBucket/LambdaCodeKey (the S3-event trigger), `image` → a "
                    "Docker build context for ImageUri (infra/docker/Dockerfile and what it copies).",
        epilog="example:\n  clipwatch package model --model kinetics400 --out build/model.tar.gz\n"
               "  clipwatch package lambda --out build/clipwatch-trigger.zip\n"
               "  clipwatch package image --out build/image && docker build -t clipwatch-serve build/image")
    artifacts = package.add_subparsers(dest="artifact", required=True)
    for name, help_text in (("model", "model.tar.gz of a model directory"),
                            ("lambda", "the trigger Lambda's zip"),
                            ("image", "the serving image's Docker build context")):
        p = artifacts.add_parser(name, help=help_text)
        if name == "model":
            p.add_argument("--model", default="models/demo",
                           help="model directory or fetched catalogue name (default models/demo)")
        p.add_argument("--out", default=DEFAULT_OUT[name], help=f"where to write (default {DEFAULT_OUT[name]})")
    package.set_defaults(run=_package)
