"""Why a prediction may be wrong, beyond its confidence: the signals the endpoint measures beside
every prediction, and the model's reference bank they are measured against.

Confidence is overconfident exactly where the input is unlike what the model was trained on (a
tiny object moving left, called ``static_scene`` at 0.92); these signals look at the input
instead of the output:

- **novelty**: cosine distance from the segment's embedding to its ``k`` nearest clips in the
  model's reference bank (``reference.npz``: embeddings of its own training clips, written by
  ``clipwatch evaluate``). Far from everything it learned on: its answer is a guess.
- **class novelty**: the same, among the training clips of the *predicted* class only: a clip
  near the training data but not near the class it was given is a confusion.
- **evidence**: log-sum-exp of the calibrated logits (the negative free energy of Liu et al.
  2020, "Energy-based Out-of-distribution Detection"): how strongly *any* class the model knows
  is present. Measured here, the demo model's features for real footage sit *closer* to its
  synthetic training clips than its own live segments do (weak activations look like a static
  scene), while its evidence falls from a median of 16 to 5: novelty alone would miss such a
  camera, evidence does not.
- **motion**: mean absolute change between consecutive frames of the clip the model saw, in
  the model's normalised input; the routing model compares it with what is typical for the
  predicted class (a "static scene" with motion in it).
- **clip disagreement**: where the first clip is doubtful, a second clip from the segment's
  first half; 1 − the probability it gives the first clip's label.

``inference.routing`` combines them into one review score; ``temporal`` context (a label both
neighbours contradict) is known only once the next segment is in, and is applied late
(``inference.predictor``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

REFERENCE_FILE = "reference.npz"
NEIGHBOURS = 5


def evidence(logits: np.ndarray, temperature: float) -> float:
    """Mean over clips of log Σ exp(logits / T), computed stably."""
    z = logits.astype(np.float64) / temperature
    top = z.max(axis=-1, keepdims=True)
    return float((top[..., 0] + np.log(np.exp(z - top).sum(axis=-1))).mean())


def motion_energy(batch: np.ndarray) -> float:
    """(N, 3, T, H, W) normalised clips → mean |frame(t+1) − frame(t)| over clips, channels and
    pixels: how much moves in what the model sees (0 for a still picture)."""
    if batch.shape[2] < 2:
        return 0.0
    return float(np.abs(np.diff(batch, axis=2)).mean())


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


class ReferenceError(ValueError):
    """A reference bank that cannot be used with this model."""


@dataclass
class ReferenceBank:
    """Unit-length embeddings of the model's training clips and their class indices."""

    embeddings: np.ndarray  # (N, D) float32, unit rows
    labels: np.ndarray  # (N,) int
    model_version: str

    def _knn(self, embedding: np.ndarray, rows: np.ndarray) -> float:
        if len(rows) == 0:
            return 1.0  # no training clip of this class: as novel as a cosine distance gets
        sims = rows @ embedding.astype(np.float32)
        k = min(NEIGHBOURS, len(sims))
        nearest = np.partition(-sims, k - 1)[:k]
        return float(np.clip(1.0 + nearest.mean(), 0.0, 2.0))  # mean cosine distance

    def _vector(self, embedding) -> np.ndarray:
        e = np.asarray(embedding, dtype=np.float32)
        if e.shape != self.embeddings.shape[1:]:
            raise ReferenceError(f"embedding of {e.size} values, reference bank holds "
                                 f"{self.embeddings.shape[1]}")
        return e

    def novelty(self, embedding) -> float:
        """Mean cosine distance to the k nearest training clips."""
        return self._knn(self._vector(embedding), self.embeddings)

    def class_novelty(self, embedding, label_index: int) -> float:
        """The same, among the training clips of class ``label_index``."""
        return self._knn(self._vector(embedding), self.embeddings[self.labels == label_index])

    def save(self, model_dir: Path) -> Path:
        """Written to a temporary name, then renamed: a serving endpoint never reads half."""
        path = Path(model_dir) / REFERENCE_FILE
        tmp = path.with_name(".reference.tmp.npz")
        np.savez_compressed(tmp, embeddings=self.embeddings.astype(np.float16),
                            labels=self.labels.astype(np.int32),
                            model_version=np.array(self.model_version))
        tmp.replace(path)
        return path

    @classmethod
    def build(cls, features: np.ndarray, labels: np.ndarray, model_version: str,
              per_class: int = 250, seed: int = 0) -> "ReferenceBank":
        """From training clips' features; at most ``per_class`` a class (drawn at random), so
        the bank stays small (a few MB even for Kinetics' 400 classes) and a lookup fast."""
        labels = np.asarray(labels)
        rng = np.random.default_rng(seed)
        keep = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                               for c in np.unique(labels)]) if len(labels) else np.array([], int)
        keep.sort()
        return cls(unit_rows(np.asarray(features)[keep]), labels[keep].astype(int), model_version)

    @classmethod
    def load(cls, model_dir: Path, model_version: str | None = None) -> "ReferenceBank | None":
        """The bank beside a model, or None when it has none. Raises ReferenceError for one
        that cannot be read or belongs to another model version."""
        path = Path(model_dir) / REFERENCE_FILE
        if not path.is_file():
            return None
        try:
            with np.load(path) as z:
                bank = cls(z["embeddings"].astype(np.float32), z["labels"].astype(int),
                           str(z["model_version"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ReferenceError(f"{path}: unreadable reference bank ({exc})") from None
        if bank.embeddings.ndim != 2 or len(bank.embeddings) != len(bank.labels):
            raise ReferenceError(f"{path}: {bank.embeddings.shape} embeddings for "
                                 f"{bank.labels.shape} labels")
        if model_version is not None and bank.model_version != model_version:
            raise ReferenceError(f"{path}: made for model {bank.model_version}, not {model_version}; "
                                 f"rerun `clipwatch evaluate` to rebuild it")
        return bank
