"""What a forward pass says: calibrated probabilities, how sure the model is, and the clip
embedding. One implementation for serving (``inference.predictor``), pre-segmentation
(``inference.presegment``) and evaluation (``training``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class Summary:
    probabilities: np.ndarray  # calibrated, averaged over clips
    top: list[int]  # class indices, best first
    confidence: float
    margin: float
    entropy: float


def summarize(logits: np.ndarray, temperature: float, top_k: int) -> Summary:
    """Average the clips' calibrated probabilities and measure how sure the model is."""
    probs = softmax(logits, temperature).mean(axis=0)
    order = np.argsort(-probs)
    second = float(probs[order[1]]) if len(order) > 1 else 0.0
    entropy = float(-(probs * np.log(np.clip(probs, 1e-12, None))).sum())
    return Summary(probs, [int(i) for i in order[:top_k]], float(probs[order[0]]),
                   float(probs[order[0]]) - second, entropy)


def embed(features: np.ndarray) -> list[float]:
    """The clips' features averaged, then L2-normalised: one unit vector per segment."""
    mean = features.astype(np.float64).reshape(len(features), -1).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return [float(v) for v in (mean / norm if norm > 0 else mean)]
