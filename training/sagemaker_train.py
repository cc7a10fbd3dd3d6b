"""SageMaker script-mode entry point: AWS's MXNet training container runs this file with the
job's hyperparameters as ``--name value`` arguments and its channels and output folder in
``SM_*`` variables. It runs the same ``train`` as ``clipwatch train``.

- ``SM_CHANNEL_TRAIN``: a dataset folder (``train.txt`` + ``classes.txt`` + videos, or class
  folders); ``SM_CHANNEL_VALIDATION`` (optional): one with ``val.txt``.
- ``SM_MODEL_DIR``: where the model directory goes; SageMaker uploads it as model.tar.gz.
- ``/opt/ml/checkpoints`` (when the job has a CheckpointConfig): checkpoints go there, and a
  restarted (e.g. spot-interrupted) job resumes from them.
- ``SM_HPS``: the hyperparameters as JSON; they are the defaults the arguments override.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

CHECKPOINTS = Path("/opt/ml/checkpoints")


def parse(argv: list[str], env: dict[str, str]) -> dict:
    """SM_HPS (JSON-typed) overridden by the arguments; defaults are TrainConfig's."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, kind in (("base", str), ("epochs", int), ("batch_size", int), ("optimizer", str),
                       ("lr", float), ("freeze_epochs", int), ("feature_lr_mult", float),
                       ("patience", int), ("seed", int), ("version", str)):
        p.add_argument(f"--{name.replace('_', '-')}", f"--{name}", dest=name, type=kind)
    # The container passes every hyperparameter as an argument: ignore the ones not known here.
    args, _unknown = p.parse_known_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None}
    return {**json.loads(env.get("SM_HPS", "{}")), **given}


def main(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    settings = parse(sys.argv[1:] if argv is None else argv, env)
    import inference  # noqa: F401  -- sets MXNet's thread count before MXNet loads

    from training.train import make_config, train  # absolute: the container runs this as a script

    # SageMaker mounts /opt/ml/checkpoints only for jobs with a CheckpointConfig.
    checkpoints = CHECKPOINTS if CHECKPOINTS.is_dir() else Path(env["SM_MODEL_DIR"]) / "checkpoints"
    validation = env.get("SM_CHANNEL_VALIDATION")
    return train(make_config(
        env["SM_CHANNEL_TRAIN"], env["SM_MODEL_DIR"], settings,
        validation=Path(validation) if validation else None, checkpoint_dir=checkpoints,
        resume=(checkpoints / "state.json").is_file(), progress=False))


if __name__ == "__main__":
    main()
