"""A deployment: the folder a serving process follows, so a model can be replaced under it
without a restart.

    DEPLOY/
      current -> versions/<version>    a relative symlink, replaced by rename (atomic)
      versions/<version>/              model directories, kept: rolling back is re-pointing
      history.jsonl                    what was deployed, when, and the gate that let it in

``clipwatch serve --model DEPLOY`` (and the in-process worker of ``clipwatch worker``/``watch``)
serves ``current`` and polls it (``DeploymentWatcher``); when it points elsewhere the new model
is loaded beside the old one, which serves until the new one is warm, and in-flight invocations
finish on the model they started with (``inference.predictor.Endpoint.swap``). A promotion
writes the whole version directory before the symlink moves, so a follower never sees half a
model. Plain model directories are served as they are and never reloaded: rewriting files under
a running process is how it would read half a model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Callable

from clipwatch.records import utc_now

log = logging.getLogger("clipwatch.deployment")

CURRENT, VERSIONS, HISTORY = "current", "versions", "history.jsonl"


class DeploymentError(RuntimeError):
    """A promotion that cannot happen; the message is one line and nothing serving changed."""


def current(path: str | Path) -> Path | None:
    """The model directory a deployment serves now (resolved), or None when ``path`` is not a
    deployment."""
    link = Path(path) / CURRENT
    if not link.is_symlink():
        return None
    return link.resolve()


def promote(model_dir: Path, deployment: Path, record: dict | None = None) -> Path:
    """Copy ``model_dir`` into ``deployment/versions/<its version>`` (unless that version is
    there already: then this is a roll back or forward to it) and point ``current`` at it.
    ``record`` (e.g. the gate's figures) goes into ``history.jsonl``. Returns the version dir."""
    model_dir, deployment = Path(model_dir).resolve(), Path(deployment)
    version = _version_of(model_dir)
    target = deployment / VERSIONS / version
    if target.resolve() != model_dir:
        if target.exists():
            if _version_of(target) != version or _weights(target) != _weights(model_dir):
                raise DeploymentError(f"{target} already holds a different model called {version!r}: "
                                      "give the new one another version")
        else:
            (deployment / VERSIONS).mkdir(parents=True, exist_ok=True)
            staging = deployment / VERSIONS / f".{version}.{uuid.uuid4().hex[:8]}.tmp"
            shutil.copytree(model_dir, staging, ignore=shutil.ignore_patterns("checkpoints"))
            staging.rename(target)
    before = current(deployment)
    link_tmp = deployment / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
    os.symlink(Path(VERSIONS) / version, link_tmp)
    os.replace(link_tmp, deployment / CURRENT)  # rename over the old link: never no `current`
    entry = {"at": utc_now(), "version": version, "previous": before.name if before else None,
             **(record or {})}
    with (deployment / HISTORY).open("a") as f:
        f.write(json.dumps(entry) + "\n")
    log.info("deployment %s now serves %s (was %s)", deployment, version, entry["previous"])
    return target


def history(deployment: Path) -> list[dict]:
    f = Path(deployment) / HISTORY
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.is_file() else []


def _version_of(model_dir: Path) -> str:
    card = model_dir / "model.json"
    if not (model_dir / "model-symbol.json").is_file() or not card.is_file():
        raise DeploymentError(f"{model_dir} is not a model directory with a model.json")
    version = json.loads(card.read_text()).get("version", "")
    if not version or "/" in version or version.startswith("."):
        raise DeploymentError(f"{card}: version {version!r} cannot name a folder")
    return version


def _weights(model_dir: Path) -> bytes:
    return (model_dir / "model-0000.params").read_bytes()


class DeploymentWatcher:
    """Polls a deployment's ``current`` every ``interval`` seconds and calls ``on_change(dir)``
    in its own thread when it points somewhere new. A change that fails to load is logged and
    not retried until ``current`` moves again (the old model keeps serving)."""

    def __init__(self, deployment: Path, on_change: Callable[[Path], None], interval: float = 2.0,
                 serving: Path | None = None):
        """``serving``: the model directory loaded from ``current`` before this watcher starts
        (a promotion in between is then picked up too); by default what ``current`` is now."""
        self.deployment, self.on_change, self.interval = Path(deployment), on_change, interval
        self.serving = Path(serving).resolve() if serving is not None else current(deployment)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="deployment-watcher")

    def start(self) -> "DeploymentWatcher":
        self._thread.start()
        return self

    def check(self) -> bool:
        """One poll; True when a new model was handed over."""
        now = current(self.deployment)
        if now is None or now == self.serving:
            return False
        self.serving = now  # tried once: a model that fails to load is not reloaded in a loop
        try:
            self.on_change(now)
        except Exception:  # noqa: BLE001 -- the serving model stays; the log says why
            log.exception("could not switch to %s; still serving the previous model", now)
            return False
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 60)
