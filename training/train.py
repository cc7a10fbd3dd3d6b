"""Fine-tuning: a base I3D with a fresh classifier for the dataset's classes.

The loop is plain Gluon: cosine learning rate with warm-up, an optional number of epochs where
only the new classifier learns (``freeze_epochs``), a smaller learning rate for pretrained
features (``feature_lr_mult``), a checkpoint after every epoch, early stopping on validation
top-1 and resuming from the last checkpoint. A base trained on the same classes (a served
model retrained on its reviews, ``training.retrain``) keeps its classifier as the start. The result is the model directory the endpoint
loads, plus ``model.tar.gz`` for SageMaker.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from inference.catalogue import CATALOGUE
from inference.model import InputSpec, ModelCard, save_model_dir
from inference.model_archive import write_model_archive

from .datasets import ClipDataset, dataset_logits, iterate_batches, load_split, read_flip_map
from .network import TINY, base_dir, classifier_of, features_of, with_new_classifier

# The demo network's input: 16 frames 2 apart (~1 s at 30 fps), frames scaled to 120×96 and
# center-cropped to 96×96. Measured on the synthetic activities (test top-1): 114×64 → 64² and
# 80×64 → 64² gave 0.82, small shapes rotating in place being taken for static scenes; 96²
# costs ~1.6× per step and gave 0.88. Squeezing 16:9 to 120×96 keeps 80% of the width in the
# crop, so objects crossing the frame stay in view. (decord 0.6 cannot scale to some widths,
# 72 among them.)
TINY_INPUT = InputSpec(frames=16, stride=2, resize=(120, 96), crop=96)


class TrainingError(RuntimeError):
    pass


@dataclass
class TrainConfig:
    data: Path
    out: Path
    base: str = TINY
    validation: Optional[Path] = None  # defaults to data (its val split)
    epochs: int = 12
    batch_size: int = 16
    optimizer: str = "adam"  # adam trains i3d_tiny from scratch; sgd suits fine-tuning I3D-R50
    lr: float = 2e-3
    momentum: float = 0.9  # sgd only
    wd: float = 1e-4
    warmup_epochs: float = 1.0
    freeze_epochs: int = 0
    feature_lr_mult: float = 1.0
    patience: int = 4
    seed: int = 0
    resume: bool = False
    version: Optional[str] = None
    checkpoint_dir: Optional[Path] = None  # defaults to out/checkpoints
    spec: InputSpec = field(default_factory=lambda: TINY_INPUT)
    progress: bool = True


@dataclass
class TrainState:
    classes: list[str]
    base: str
    epoch: int = 0  # epochs completed
    best_top1: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)


def base_card(base: str) -> ModelCard | None:
    """The model card of a base that has one (a model directory, a fetched catalogue name)."""
    path = base_dir(base)
    if path is None or not (path / "model.json").is_file():
        return None
    return ModelCard.model_validate_json((path / "model.json").read_text())


def default_spec(base: str) -> InputSpec:
    """The input the base network was made for: its model card's, when it has one."""
    if base == TINY:
        return TINY_INPUT
    card = base_card(base)
    return card.input if card is not None else InputSpec()


FROZEN_HEAD_DEFAULTS = {"epochs": 300, "lr": 1e-2, "patience": 60}

# The settings a user tunes from the command line or as SageMaker hyperparameters.
TUNABLE = ("base", "epochs", "batch_size", "optimizer", "lr", "freeze_epochs", "feature_lr_mult",
           "patience", "seed", "version")


def make_config(data: Path, out: Path, settings: dict, **fixed) -> TrainConfig:
    """TrainConfig's own defaults, overridden by the ``settings`` given (None: not given); the
    input spec follows the base. One place for the defaults, whatever the front end."""
    given = {k: v for k, v in settings.items() if k in TUNABLE and v is not None}
    base = given.get("base", TrainConfig.base)
    if base in CATALOGUE and "freeze_epochs" not in given:
        # A published backbone (DeepMind's I3D) stays frozen unless asked otherwise: on a CPU
        # only the new classifier can learn in minutes (training.features). Epochs over cached
        # features take milliseconds and a small set has few steps in one: defaults that give
        # a linear classifier enough steps (10 clips a class: val top-1 0.29 after 60 epochs at
        # 1e-3, 0.50 after 50 at 1e-2, measured here).
        for name, value in FROZEN_HEAD_DEFAULTS.items():
            given.setdefault(name, value)
        given["freeze_epochs"] = given["epochs"]
    return TrainConfig(data=Path(data), out=Path(out), spec=default_spec(base), **given, **fixed)


def train(cfg: TrainConfig) -> Path:
    import mxnet as mx
    from mxnet import autograd, gluon

    ctx = mx.gpu(0) if mx.context.num_gpus() > 0 else mx.cpu()
    classes, train_records = load_split(cfg.data, "train")
    val_root = cfg.validation or cfg.data
    val_classes, val_records = load_split(val_root, "val")
    if val_classes != classes:
        raise TrainingError(f"validation classes {val_classes} differ from training classes {classes}")
    ckpt = cfg.checkpoint_dir or cfg.out / "checkpoints"
    state = _resume_state(ckpt, classes, cfg) if cfg.resume else None
    state = state or TrainState(classes=classes, base=str(cfg.base))

    features, pretrained = features_of(cfg.base, ctx)
    if pretrained and cfg.freeze_epochs >= cfg.epochs and base_dir(cfg.base) is not None:
        return train_head(cfg, ctx, classes, train_records, val_records)
    net = with_new_classifier(features, len(classes))
    net[2].initialize(mx.init.Xavier(), ctx=ctx)
    if pretrained and not state.epoch:
        net(mx.nd.zeros(cfg.spec.clip_shape(), ctx=ctx))  # shapes
        _start_from_base(net[2], cfg, classes, ctx)
    if pretrained:
        for p in features.collect_params().values():
            p.lr_mult = cfg.feature_lr_mult
    net.hybridize()
    opt = {"learning_rate": cfg.lr, "wd": cfg.wd}
    if cfg.optimizer == "sgd":
        opt["momentum"] = cfg.momentum
    trainer = gluon.Trainer(net.collect_params(), cfg.optimizer, opt)
    if state.epoch:
        # Weights and the schedule's position resume; the optimizer's moments start afresh
        # (MXNet 1.9.1 maps saved Adam states onto the wrong parameters of a rebuilt network).
        net.load_parameters(str(ckpt / "last.params"), ctx=ctx)

    train_set = ClipDataset(train_records, cfg.spec, train=True,
                            flip_map=read_flip_map(cfg.data, classes), seed=cfg.seed)
    val_set = ClipDataset(val_records, cfg.spec, train=False)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    steps_per_epoch = max(1, math.ceil(len(train_set) / cfg.batch_size))
    skipped: dict[str, str] = {}
    progress = _progress(cfg.progress)
    with ThreadPoolExecutor(2) as pool, progress:
        for epoch in range(state.epoch, cfg.epochs):
            _set_frozen(features, epoch < cfg.freeze_epochs)
            order = list(np.random.default_rng((cfg.seed, epoch)).permutation(len(train_set)))
            task = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch)
            losses = []
            for step, (x, y) in enumerate(iterate_batches(train_set, order, cfg.batch_size, pool, epoch, skipped)):
                trainer.set_learning_rate(_lr(cfg, epoch + step / steps_per_epoch))
                xb, yb = mx.nd.array(x, ctx=ctx), mx.nd.array(y, ctx=ctx)
                with autograd.record():
                    loss = loss_fn(net(xb), yb)
                loss.backward()
                trainer.step(len(y))
                losses.append(float(loss.mean().asscalar()))
                progress.update(task, advance=1, description=f"epoch {epoch + 1}/{cfg.epochs} loss {np.mean(losses):.3f}")
            logits, labels = dataset_logits(lambda x: net(mx.nd.array(x, ctx=ctx)).asnumpy(),
                                            val_set, pool, cfg.batch_size, skipped)
            top1 = float((logits.argmax(1) == labels).mean()) if len(labels) else 0.0
            state.history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                                  "val_top1": top1, "lr": _lr(cfg, epoch + 1)})
            progress.update(task, description=f"epoch {epoch + 1}/{cfg.epochs} loss "
                                              f"{np.mean(losses) if losses else float('nan'):.3f} val top-1 {top1:.3f}")
            state.epoch = epoch + 1
            improved = top1 > state.best_top1
            if improved:
                state.best_top1, state.best_epoch, state.bad_epochs = top1, epoch + 1, 0
            else:
                state.bad_epochs += 1
            _checkpoint(ckpt, net, state, improved)
            if state.bad_epochs >= cfg.patience:
                break
    # Export from a fresh network: after training, MXNet 1.9.1's oneDNN arrays of the live one
    # cannot be copied out ("Check failed: to.IsDefaultData()").
    best = with_new_classifier(features_of(cfg.base, ctx)[0], len(classes))
    best.load_parameters(str(ckpt / "best.params"), ctx=ctx)
    return export(best, cfg, state, skipped)


def train_head(cfg: TrainConfig, ctx, classes: list[str], train_records, val_records) -> Path:
    """A frozen backbone: every clip's features once, with the base's serving runtime
    (training.features), then only the new classifier (dropout + dense) learns, in Gluon, on
    the vectors; the best epoch on validation is exported on top of the base's network. It
    takes seconds once the features are cached, so it always starts afresh (no checkpoints)."""
    import mxnet as mx
    from mxnet import autograd, gluon

    from inference.model import load_classifier

    from .features import clip_features

    base = load_classifier(base_dir(cfg.base))
    skipped: dict[str, str] = {}
    with _progress(cfg.progress) as progress:
        x_train, y_train = clip_features(base, ClipDataset(train_records, cfg.spec, train=False),
                                         progress=progress, skipped=skipped)
        x_val, y_val = clip_features(base, ClipDataset(val_records, cfg.spec, train=False),
                                     progress=progress, skipped=skipped)
    if not len(x_train):
        raise TrainingError("no training clip could be decoded")
    state = TrainState(classes=classes, base=str(cfg.base))
    head = gluon.nn.HybridSequential()
    head.add(gluon.nn.Dropout(0.3), gluon.nn.Dense(len(classes)))
    mx.random.seed(cfg.seed)
    head.initialize(mx.init.Xavier(), ctx=ctx)
    head(mx.nd.array(x_train[:1], ctx=ctx))  # shapes
    start = _start_from_base(head[1], cfg, classes, ctx)
    trainer = gluon.Trainer(head.collect_params(), cfg.optimizer, {"learning_rate": cfg.lr, "wd": cfg.wd})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    steps = max(1, math.ceil(len(x_train) / cfg.batch_size))
    best = None
    for epoch in range(cfg.epochs):
        order = np.random.default_rng((cfg.seed, epoch)).permutation(len(x_train))
        losses = []
        for step in range(steps):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            trainer.set_learning_rate(_lr(cfg, epoch + step / steps))
            xb, yb = mx.nd.array(x_train[idx], ctx=ctx), mx.nd.array(y_train[idx], ctx=ctx)
            with autograd.record():
                loss = loss_fn(head(xb), yb)
            loss.backward()
            trainer.step(len(idx))
            losses.append(float(loss.mean().asscalar()))
        top1 = float((head(mx.nd.array(x_val, ctx=ctx)).asnumpy().argmax(1) == y_val).mean()) \
            if len(y_val) else 0.0
        state.history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                              "val_top1": top1, "lr": _lr(cfg, epoch + 1)})
        state.epoch = epoch + 1
        # From the base's classifier, a later epoch as good on validation has learned more of
        # the new clips without losing the old ones: ties go to it.
        if top1 > state.best_top1 or (start and top1 == state.best_top1):
            state.best_top1, state.best_epoch, state.bad_epochs = top1, epoch + 1, 0
            best = [p.data().asnumpy() for p in head[1].collect_params().values()]
        else:
            state.bad_epochs += 1
        if state.bad_epochs >= cfg.patience:
            break
    net = with_new_classifier(features_of(cfg.base, ctx)[0], len(classes))
    net[2].initialize(ctx=ctx)
    net(mx.nd.zeros(cfg.spec.clip_shape(), ctx=ctx))  # shapes
    for p, value in zip(net[2].collect_params().values(), best):
        p.set_data(mx.nd.array(value, ctx=ctx))
    state.history.append({"frozen_backbone": True, "head_from_base": start,
                          "feature_clips": {"train": len(x_train), "val": len(x_val)}})
    return export(net, cfg, state, skipped)


def _start_from_base(dense, cfg: TrainConfig, classes: list[str], ctx) -> bool:
    """Fine-tuning a model on its own classes (``clipwatch retrain``): the new classifier
    starts as the base's, so what it knows is where training begins, not something to relearn.
    False (a fresh classifier) for a base with other classes."""
    import mxnet as mx

    path = base_dir(cfg.base)
    if path is None or not (path / "classes.txt").is_file():
        return False
    if [c.strip() for c in (path / "classes.txt").read_text().splitlines() if c.strip()] != classes:
        return False
    start = classifier_of(path)
    weight = dense.weight.data()
    if start is None or start[0].shape != weight.shape:
        return False
    for p, value in zip((dense.weight, dense.bias), start):
        p.set_data(mx.nd.array(value, ctx=ctx))
    return True


def export(net, cfg: TrainConfig, state: TrainState, skipped: dict[str, str]) -> Path:
    base = base_card(cfg.base)  # None for i3d_tiny and model-zoo names
    if base is not None:
        arch = base.architecture
    else:
        arch = TINY if cfg.base == TINY else "i3d_resnet50_v1_custom"
    version = cfg.version or f"{Path(cfg.out).name}-e{state.best_epoch}"
    card = ModelCard(architecture=arch, version=version, input=cfg.spec, metrics={
        "val_top1": state.best_top1, "best_epoch": state.best_epoch, "epochs_run": state.epoch,
        "history": state.history, "skipped_clips": skipped, "base": str(cfg.base)})
    save_model_dir(net, cfg.out, state.classes, card)
    write_model_archive(Path(cfg.out))
    return Path(cfg.out)


def _lr(cfg: TrainConfig, epoch: float) -> float:
    """Linear warm-up, then cosine decay to 0 at the last epoch."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * max(epoch, 0.05) / cfg.warmup_epochs
    t = (epoch - cfg.warmup_epochs) / max(cfg.epochs - cfg.warmup_epochs, 1e-9)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(t, 1.0)))


def _set_frozen(features, frozen: bool) -> None:
    for p in features.collect_params().values():
        p.grad_req = "null" if frozen else "write"


def _checkpoint(ckpt: Path, net, state: TrainState, improved: bool) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    net.save_parameters(str(ckpt / "last.params"))
    if improved:
        net.save_parameters(str(ckpt / "best.params"))
    tmp = ckpt / "state.json.tmp"  # written whole, then renamed: an interruption leaves the old one
    tmp.write_text(json.dumps(asdict(state), indent=1))
    tmp.replace(ckpt / "state.json")


def _resume_state(ckpt: Path, classes: list[str], cfg: TrainConfig) -> Optional[TrainState]:
    f = ckpt / "state.json"
    if not f.is_file():
        return None
    state = TrainState(**json.loads(f.read_text()))
    if state.classes != classes:
        raise TrainingError(
            f"cannot resume from {ckpt}: it was trained for {len(state.classes)} classes "
            f"({', '.join(state.classes)}), the data has {len(classes)} ({', '.join(classes)}); "
            "train into a new --out or drop --resume")
    if state.base != str(cfg.base):
        raise TrainingError(f"cannot resume from {ckpt}: its base is {state.base}, not {cfg.base}")
    return state


def _progress(enabled: bool):
    """On stderr: stdout is for what a command reports (``clipwatch retrain`` prints JSON)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), disable=not enabled, console=Console(stderr=True))
