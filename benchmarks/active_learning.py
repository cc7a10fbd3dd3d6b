"""Which reviews are worth asking for: the review queue's order, measured by the accuracy it buys.

Seed 004's claim is that uncertain-and-diverse clips teach a model most per label. Simulated
here on labelled live streams (``clipwatch synth --live --streams``): reviewers label the queue
in order, ``k`` clips a batch, and after every batch the model is retrained on all labels so far;
its accuracy is measured on held-out streams. Three orders:

- ``queue``: today's (``review/queue.order_queue``: the most uncertain half, clustered by k-means
  on the clip embeddings into ``k`` groups, each group's most central clip first);
- ``uncertainty``: the ``k`` most uncertain;
- ``random``;
- ``queue→uncertainty``: today's queue for the first ``--switch-after`` labels (50), uncertainty
  only after: diversity where labels are few, uncertainty where the model has learned enough to
  know what it does not know.

Retraining is the frozen-backbone recipe of ``clipwatch train --base`` (``training/features.py``):
the serving model's embeddings stay, a softmax head is refitted on the labels — seconds, so a
whole curve is cheap; every batch starts from the same ``k`` random labels per repeat.

    .venv/bin/python benchmarks/active_learning.py --streams .cache/routing-streams --k 10 \
        --rounds 20 --repeats 5 --out benchmarks/results/active_learning.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.scoring import softmax  # noqa: E402  -- after the path, as a script

ORDERS = ("queue", "uncertainty", "random", "queue→uncertainty")


def fit_head(x: np.ndarray, y: np.ndarray, classes: int, l2: float = 1e-3, steps: int = 300) -> np.ndarray:
    """Softmax regression (weights with a bias row) by full-batch gradient descent with Adam."""
    a = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros((a.shape[1], classes))
    m, v = np.zeros_like(w), np.zeros_like(w)
    onehot = np.eye(classes)[y]
    for t in range(1, steps + 1):
        g = a.T @ (softmax(a @ w) - onehot) / len(a) + l2 * w
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w -= 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return w


def probabilities(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return softmax(np.hstack([x, np.ones((len(x), 1))]) @ w)


def pick(order: str, pool: list[int], p: np.ndarray, x: np.ndarray, k: int, rng, predictions,
         labelled: int = 0, switch_after: int = 50) -> list[int]:
    """The next ``k`` pool items (indices into the pool) in the given order, ``labelled`` labels
    in."""
    if order == "queue→uncertainty":
        order = "queue" if labelled < switch_after else "uncertainty"
    if order == "random":
        return list(rng.choice(len(pool), size=min(k, len(pool)), replace=False))
    top = np.sort(p, axis=1)
    uncertainty, margin = 1.0 - top[:, -1], top[:, -1] - top[:, -2]
    if order == "uncertainty":
        return list(np.argsort(-uncertainty, kind="stable")[:k])
    from clipwatch.records import ReviewTask
    from review.queue import QueueItem, order_queue

    items = []
    for n, i in enumerate(pool):
        task = ReviewTask.for_prediction(predictions[i])
        task.uncertainty, task.margin = float(uncertainty[n]), float(margin[n])
        items.append(QueueItem(task, x[n]))
    position = {id(item): n for n, item in enumerate(items)}
    return [position[id(item)] for item in order_queue(items, budget=k)[:k]]


def simulate(x, y, pool_idx, test_idx, classes, order, k, rounds, seed, predictions,
             switch_after: int = 50) -> list[float]:
    rng = np.random.default_rng(seed)
    labelled = list(rng.choice(pool_idx, size=k, replace=False))
    pool = [i for i in pool_idx if i not in set(labelled)]
    curve = []
    for _ in range(rounds + 1):
        w = fit_head(x[labelled], y[labelled], classes)
        curve.append(float((probabilities(w, x[test_idx]).argmax(1) == y[test_idx]).mean()))
        if not pool:
            break
        chosen = pick(order, pool, probabilities(w, x[pool]), x[pool], k, rng, predictions,
                      len(labelled), switch_after)
        labelled += [pool[n] for n in chosen]
        pool = [i for n, i in enumerate(pool) if n not in set(chosen)]
    return curve


def reviews_to_reach(curve: list[float], target: float, k: int) -> int | None:
    for n, acc in enumerate(curve):
        if acc >= target:
            return k * (n + 1)
    return None


def plot(result: dict, out_png: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    k = result["k"]
    for order, colour in zip(ORDERS, ("tab:blue", "tab:orange", "tab:gray", "tab:green")):
        mean = np.array(result["curves"][order]["mean"])
        spread = np.array(result["curves"][order]["std"])
        reviews = k * (np.arange(len(mean)) + 1)
        ax.plot(reviews, mean, color=colour, label=order)
        ax.fill_between(reviews, mean - spread, mean + spread, color=colour, alpha=0.15)
    ax.set(xlabel="reviews spent (labelled segments)", ylabel="held-out accuracy",
           title=f"Retraining after every {k} reviews ({result['repeats']} repeats, ±1 s.d.)")
    ax.legend()
    fig.savefig(out_png, dpi=120, bbox_inches="tight")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=Path, default=ROOT / ".cache" / "routing-streams")
    ap.add_argument("--model", default=str(ROOT / "models" / "demo"))
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--switch-after", type=int, default=50, help="queue→uncertainty: labels before switching")
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "benchmarks" / "active_learning.json")
    args = ap.parse_args()

    import inference  # noqa: F401  -- MXNet's thread count before MXNet loads
    from rich.progress import Progress

    from clipwatch.blobs import SegmentReader
    from inference.model import load_classifier
    from inference.predictor import Endpoint
    from training.routing import collect, find_streams, split_streams

    classifier = load_classifier(args.model)
    endpoint = Endpoint(classifier, SegmentReader(allowed_dirs=(args.streams.resolve(),)), store=None,
                        propose=False, second_clip=True)
    with Progress(transient=True) as progress:
        observations = collect(endpoint, find_streams(args.streams), progress)
    endpoint.close()
    parts = split_streams(observations)
    ordered = parts["fit"] + parts["calibration"] + parts["test"]
    x = np.array([o.prediction.embedding for o in ordered])
    y = np.array([classifier.classes.index(o.truth[0]) for o in ordered])
    predictions = [o.prediction for o in ordered]
    pool_idx = list(range(len(parts["fit"]) + len(parts["calibration"])))
    test_idx = np.arange(len(pool_idx), len(ordered))
    curves = {order: [simulate(x, y, pool_idx, test_idx, len(classifier.classes), order, args.k,
                               args.rounds, seed, predictions, args.switch_after)
                      for seed in range(args.repeats)] for order in ORDERS}
    result = {"k": args.k, "rounds": args.rounds, "repeats": args.repeats, "model": classifier.card.version,
              "pool": len(pool_idx), "held_out": len(test_idx),
              "serving_model_accuracy_on_held_out": round(float(np.mean([not o.wrong for o in parts["test"]])), 4),
              "curves": {o: {"mean": np.mean(c, axis=0).round(4).tolist(), "std": np.std(c, axis=0).round(4).tolist()}
                         for o, c in curves.items()}}
    # reviews each order needs to reach an accuracy, up to the best every order reaches
    best_common = min(max(result["curves"][o]["mean"]) for o in ORDERS)
    targets = sorted({round(t, 2) for t in (0.7, 0.75, 0.8) if t <= best_common} | {round(best_common, 4)})
    result["reviews_to_reach"] = {str(t): {o: reviews_to_reach(result["curves"][o]["mean"], t, args.k)
                                           for o in ORDERS} for t in targets}
    result["mean_accuracy_over_the_curve"] = {o: round(float(np.mean(result["curves"][o]["mean"])), 4)
                                              for o in ORDERS}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k != "curves"}, indent=1))
    print(f"written: {args.out}, {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
