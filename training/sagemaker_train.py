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


def parse(argv: list[str], env: dict[str, str]):
    hps = json.loads(env.get("SM_HPS", "{}"))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default=hps.get("base", "i3d_tiny"))
    p.add_argument("--epochs", type=int, default=int(hps.get("epochs", 12)))
    p.add_argument("--batch-size", "--batch_size", type=int, default=int(hps.get("batch_size", 16)))
    p.add_argument("--optimizer", default=hps.get("optimizer", "adam"))
    p.add_argument("--lr", type=float, default=float(hps.get("lr", 2e-3)))
    p.add_argument("--freeze-epochs", "--freeze_epochs", type=int, default=int(hps.get("freeze_epochs", 0)))
    p.add_argument("--feature-lr-mult", "--feature_lr_mult", type=float,
                   default=float(hps.get("feature_lr_mult", 1.0)))
    p.add_argument("--patience", type=int, default=int(hps.get("patience", 4)))
    p.add_argument("--seed", type=int, default=int(hps.get("seed", 0)))
    p.add_argument("--version", default=hps.get("version"))
    # The container passes every hyperparameter as an argument: ignore the ones not known here.
    args, _unknown = p.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    args = parse(sys.argv[1:] if argv is None else argv, env)
    import inference  # noqa: F401  -- sets MXNet's thread count before MXNet loads

    from training.train import TrainConfig, default_spec, train  # absolute: run as a script

    # SageMaker mounts /opt/ml/checkpoints only for jobs with a CheckpointConfig.
    checkpoints = CHECKPOINTS if CHECKPOINTS.is_dir() else Path(env["SM_MODEL_DIR"]) / "checkpoints"
    validation = env.get("SM_CHANNEL_VALIDATION")
    return train(TrainConfig(
        data=Path(env["SM_CHANNEL_TRAIN"]), out=Path(env["SM_MODEL_DIR"]), base=args.base,
        validation=Path(validation) if validation else None, epochs=args.epochs,
        batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        freeze_epochs=args.freeze_epochs, feature_lr_mult=args.feature_lr_mult,
        patience=args.patience, seed=args.seed, version=args.version,
        checkpoint_dir=checkpoints, resume=(checkpoints / "state.json").is_file(),
        spec=default_spec(args.base), progress=False))


if __name__ == "__main__":
    main()
