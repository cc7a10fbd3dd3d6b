"""Fit the review score and choose its operating point on labelled live segments
(``clipwatch evaluate --routing``): the promise "what is not reviewed is right", with a number.

**Data**: a folder of streams, each a folder of segments with its ``ground_truth.jsonl`` (one
line per segment: ``file``, ``labels``), as ``clipwatch synth --live --streams`` writes them. Every
segment goes through the serving endpoint itself (``inference.predictor.Endpoint``), so the
signals are the ones served. Splits are by stream (neighbouring segments look alike: a split
inside a stream would leak): *fit* (a quarter of the streams) → the score, seven weights that
need few examples; *calibration* (half) → the threshold, where the bound's tightness grows with
the count; *test* (the rest) → the risk–coverage curves and a check of the bound on segments
neither saw.

**Score**: L2-regularised logistic regression (Newton's method) on the standardised signals of
``inference.routing.FEATURES``, predicting "the top-1 label is not among the truth's labels".

**Operating point** (Learn then Test: Angelopoulos, Bates, Candès, Jordan & Lei 2021,
arXiv:2110.01052; with Clopper & Pearson's 1934 exact binomial bound, as in Geifman & El-Yaniv
2017's selective classification): candidate thresholds are a fixed grid (quantiles of the *fit*
split's scores, so the grid does not depend on the calibration labels); for threshold ``t`` the
auto-accepted calibration segments (score ≤ t) number ``n``, ``k`` of them wrong, and the p-value
of "their error exceeds α" is P(Binomial(n, α) ≤ k) — with ``n`` and ``k`` divided by the design
effect 1 + (m − 1)·ρ (Kish 1965), ``m`` accepted segments per stream and ``ρ`` the intra-stream
correlation of errors estimated on the fit split, because errors come in runs and neighbouring
segments are not independent trials. The grid is tested in a fixed sequence
upwards, from the threshold the fit split deems most certifiable (independent of the calibration
labels), and stops at the first threshold that fails; the last one that passed is served. Fixed-sequence testing controls the family-wise error, so with
probability ≥ 1 − δ the chosen threshold's auto-accepted error is ≤ α, for streams exchangeable
with the calibration ones (exact for independent segments; the design effect is the standard
approximate correction for clustered ones). When no threshold passes, everything is reviewed (threshold −1) and
the result says so: the guarantee is never made up.

**Temporal context** is known only after the next segment; it is applied on top (a late
review of segments both neighbours contradict), which can only lower the auto-accepted error,
and its effect is measured on the test split.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import betainc
from scipy.stats import beta as beta_dist

from clipwatch.records import InvocationRequest, Prediction, utc_now
from inference.routing import FEATURE_NAMES, FEATURES, RoutingCard, contradicted, feature_vector

METHOD = ("logistic regression on the signals; threshold by Learn then Test (fixed-sequence "
          "testing of Clopper-Pearson binomial bounds, counts divided by the design effect of "
          "errors correlated within a stream)")
GRID = 400  # candidate thresholds


class RoutingDataError(ValueError):
    """Labelled streams that cannot be used (missing files, too few streams or segments)."""


@dataclass
class Observation:
    stream: str
    prediction: Prediction
    truth: list[str]
    temporal: bool = False  # both neighbours contradict it (filled by ``mark_temporal``)

    @property
    def wrong(self) -> bool:
        return self.prediction.label not in self.truth


# ------------------------------------------------------------------------------- the data

def find_streams(root: Path) -> list[Path]:
    streams = sorted(p.parent for p in Path(root).glob("*/ground_truth.jsonl"))
    if (Path(root) / "ground_truth.jsonl").is_file():
        streams.insert(0, Path(root))
    if not streams:
        raise RoutingDataError(f"{root}: no stream folders with a ground_truth.jsonl "
                               "(clipwatch synth --live --streams N --out DIR writes some)")
    return streams


def read_truth(stream: Path) -> list[dict]:
    rows = []
    for n, line in enumerate((stream / "ground_truth.jsonl").read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append({"file": str(row["file"]), "labels": [str(x) for x in row["labels"]],
                         "sequence": int(row.get("sequence", len(rows)))})
        except (ValueError, KeyError, TypeError) as exc:
            raise RoutingDataError(f"{stream / 'ground_truth.jsonl'}:{n}: {exc!r}") from None
    return rows


def collect(endpoint, streams: list[Path], progress=None,
            skipped: dict[str, str] | None = None) -> list[Observation]:
    """Every labelled segment of ``streams`` through ``endpoint`` (usually one without a
    store), in stream order. A segment that is missing or does not decode is left out and named in
    ``skipped`` with the reason; the rest go on."""
    from clipwatch.errors import ClipwatchError

    skipped = {} if skipped is None else skipped
    out: list[Observation] = []
    total = sum(len(read_truth(s)) for s in streams)
    task = progress.add_task(f"{total} segments through the endpoint", total=total) if progress else None
    for stream in streams:
        for row in read_truth(stream):
            path = (stream / row["file"]).resolve()
            request = InvocationRequest(uri=str(path), stream_id=stream.name, sequence=row["sequence"])
            try:
                out.append(Observation(stream.name, endpoint.invoke(request), row["labels"]))
            except ClipwatchError as exc:
                skipped[str(path)] = str(exc)
            if task is not None:
                progress.advance(task)
    mark_temporal(out)
    return out


def mark_temporal(observations: list[Observation]) -> None:
    """Mark every observation whose two neighbours on its stream contradict it."""
    by_key = {(o.stream, o.prediction.sequence): o for o in observations}
    for o in observations:
        seq = o.prediction.sequence
        before, after = by_key.get((o.stream, seq - 1)), by_key.get((o.stream, seq + 1))
        o.temporal = contradicted(before and before.prediction, o.prediction, after and after.prediction)


def split_streams(observations: list[Observation]) -> dict[str, list[Observation]]:
    """fit / calibration / test by stream: ¼, ½, ¼ of the streams in sorted order."""
    names = sorted({o.stream for o in observations})
    if len(names) < 4:
        raise RoutingDataError(f"{len(names)} streams: routing needs at least 4 (fit, calibration, test)")
    fit_end, cal_end = len(names) // 4, (3 * len(names)) // 4
    part = {n: "fit" if i < fit_end else "calibration" if i < cal_end else "test"
            for i, n in enumerate(names)}
    return {k: [o for o in observations if part[o.stream] == k] for k in ("fit", "calibration", "test")}


# ------------------------------------------------------------------------------- the score

def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 50) -> tuple[np.ndarray, float]:
    """Weights and intercept of an L2-regularised logistic regression (intercept unpenalised),
    by Newton's method; ``x`` standardised."""
    n, d = x.shape
    a = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a @ w)))
        grad = a.T @ (p - y) + penalty * w
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(penalty) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def motion_reference(observations: list[Observation]) -> dict[str, tuple[float, float]]:
    """Per predicted label: mean and spread of the motion signal over its correct predictions."""
    by_label: dict[str, list[float]] = {}
    for o in observations:
        if not o.wrong:
            by_label.setdefault(o.prediction.label, []).append(o.prediction.signals.motion)
    return {label: (float(np.mean(v)), float(max(np.std(v), 1e-3)))
            for label, v in by_label.items() if len(v) >= 3}


def label_errors(observations: list[Observation]) -> tuple[dict[str, float], float]:
    """Per predicted label, the share wrong, Laplace-smoothed ((k + 1) / (n + 2)): a label the
    model gets wrong systematically (fast objects taken for a zoom at confidence 1.0) is
    suspect whatever its confidence; and the overall share, for labels not seen."""
    counts: dict[str, list[int]] = {}
    for o in observations:
        c = counts.setdefault(o.prediction.label, [0, 0])
        c[0] += o.wrong
        c[1] += 1
    overall = float(np.mean([o.wrong for o in observations])) if observations else 0.0
    return {label: (k + 1) / (n + 2) for label, (k, n) in counts.items()}, overall


def fit_score(fit: list[Observation], features: tuple[str, ...] = FEATURE_NAMES) -> dict:
    """The score's parameters (standardisation, weights) on the fit split; ``features`` a
    subset, for the ablation (the others get weight 0)."""
    motion = motion_reference(fit)
    label_error, error_rate = label_errors(fit)
    x = np.array([feature_vector(o.prediction, motion, label_error, error_rate) for o in fit])
    y = np.array([o.wrong for o in fit], dtype=float)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    used = np.array([name in features for name in FEATURE_NAMES])
    coef = np.zeros(len(FEATURE_NAMES))
    if y.min() == y.max():  # all right (or all wrong): nothing to learn, one constant score
        intercept = 10.0 if y[0] else -10.0
    else:
        coef[used], intercept = fit_logistic(((x - mean) / scale)[:, used], y)
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": coef.tolist(),
            "intercept": intercept, "motion_by_label": motion, "label_error": label_error,
            "error_rate": error_rate}


def scores_of(params: dict, observations: list[Observation]) -> np.ndarray:
    card = _card(params, threshold=0.0, alpha=0.0, delta=0.0)
    return np.array([card.score(card.vector(o.prediction)) for o in observations])


def _card(params: dict, **kw) -> RoutingCard:
    return RoutingCard(method=METHOD, features=list(FEATURE_NAMES), **params, **kw)


# ---------------------------------------------------------------------- the operating point

def upper_bound(errors: float, n: float, delta: float) -> float:
    """Clopper–Pearson one-sided (1 − delta) upper bound on an error rate seen as errors/n
    (real-valued counts allowed: the effective counts of ``design_effect``)."""
    if n <= 0:
        return 1.0
    return 1.0 if errors >= n else float(beta_dist.ppf(1.0 - delta, errors + 1, n - errors))


def p_value(errors: float, n: float, alpha: float) -> float:
    """P(Binomial(n, alpha) ≤ errors), through the regularised incomplete beta function so that
    effective (real-valued) counts work: small when the error rate is surely under alpha."""
    return 1.0 if errors >= n else float(betainc(n - errors, errors + 1, 1.0 - alpha))


def intra_stream_correlation(observations: list[Observation]) -> float:
    """The intra-class correlation of "wrong" within streams (ANOVA estimator), ≥ 0. Errors come
    in runs — a fast object is missed for all the segments it crosses — so segments of one
    stream are not independent trials, and a bound that treats them so is too tight: measured
    on the demo model, a threshold certified at 1.8% auto-accepted 4.5% wrong on the test
    streams. Kish's design effect 1 + (m − 1)·ρ (m segments accepted per stream) divides the
    counts the bound sees."""
    groups: dict[str, list[float]] = {}
    for o in observations:
        groups.setdefault(o.stream, []).append(float(o.wrong))
    g = [np.array(v) for v in groups.values()]
    k, n = len(g), sum(len(v) for v in g)
    if k < 2 or n <= k:
        return 0.0
    grand = np.concatenate(g).mean()
    msb = sum(len(v) * (v.mean() - grand) ** 2 for v in g) / (k - 1)
    msw = sum(((v - v.mean()) ** 2).sum() for v in g) / (n - k)
    m0 = (n - sum(len(v) ** 2 for v in g) / n) / (k - 1)
    denominator = msb + (m0 - 1) * msw
    return float(max(0.0, (msb - msw) / denominator)) if denominator > 0 else 0.0


def grid_of(fit_scores: np.ndarray) -> np.ndarray:
    """The candidate thresholds: ``GRID`` quantiles of the fit split's scores, ascending (fixed
    before the calibration labels are looked at)."""
    return np.unique(np.quantile(fit_scores, np.linspace(0, 1, GRID)))


def min_accepted(alpha: float, delta: float) -> int:
    """The fewest auto-accepted segments with which any threshold can be certified (no error)."""
    return math.ceil(math.log(delta) / math.log(1.0 - alpha))


def choose_threshold(grid: np.ndarray, scores: np.ndarray, wrong: np.ndarray, alpha: float,
                     delta: float, fit_scores: np.ndarray | None = None,
                     fit_wrong: np.ndarray | None = None, streams: np.ndarray | None = None,
                     rho: float = 0.0) -> dict:
    """Learn then Test over ``grid`` (ascending): the most permissive threshold whose
    auto-accepted error is certified ≤ alpha, or -1 (review everything) when none is.

    Fixed-sequence testing stops at its first failure, so where the sequence starts matters: a
    start with few accepted segments fails on a single unlucky error. It starts at the threshold
    the *fit* split (independent of the calibration labels) deems most certifiable — the smallest
    p-value its error rate would get with the calibration's count — or, without fit data, at the
    first threshold accepting enough segments to be certified at all. With ``streams`` (each
    segment's stream) and ``rho`` (``intra_stream_correlation``), counts are divided by the
    design effect of the segments accepted per stream."""
    n_min = min_accepted(alpha, delta)

    def effective(t: float) -> tuple[int, int, float]:
        accepted = scores <= t
        n, k = int(accepted.sum()), int(wrong[accepted].sum())
        if streams is None or n == 0:
            return n, k, 1.0
        per_stream = n / len(np.unique(streams[accepted]))
        return n, k, 1.0 + (per_stream - 1.0) * rho

    counts = [effective(t) for t in grid]
    usable = np.array([n / d >= n_min for n, _, d in counts])
    start = int(np.argmax(usable)) if usable.any() else len(grid)
    if fit_scores is not None and start < len(grid):
        p_fit = [p_value(fit_wrong[fit_scores <= t].mean() * n / d, n / d, alpha)
                 if ok and (fit_scores <= t).any() else 1.0
                 for t, (n, _, d), ok in zip(grid, counts, usable)]
        start = int(np.argmin(p_fit))
    chosen = {"threshold": -1.0, "accepted": 0, "errors": 0, "upper_bound": None, "tested": 0,
              "design_effect": None, "start": float(grid[start]) if start < len(grid) else None}
    for t, (n, k, d) in zip(grid[start:], counts[start:]):
        chosen["tested"] += 1
        if p_value(k / d, n / d, alpha) > delta:  # cannot reject "error > alpha": stop here
            break
        chosen.update(threshold=float(t), accepted=n, errors=k, design_effect=round(d, 3),
                      upper_bound=upper_bound(k / d, n / d, delta))
    chosen["n"] = len(scores)
    chosen["review_rate"] = 1.0 - chosen["accepted"] / len(scores) if len(scores) else 1.0
    chosen["min_accepted_for_a_bound"] = n_min
    return chosen


def risk_coverage(scores: np.ndarray, wrong: np.ndarray) -> dict:
    """Auto-accepted error against review rate, accepting the lowest scores first; the area
    under the risk–coverage curve (AURC, lower is better)."""
    order = np.argsort(scores, kind="stable")
    errors = np.cumsum(wrong[order])
    accepted = np.arange(1, len(scores) + 1)
    risk = errors / accepted
    return {"review_rate": (1.0 - accepted / len(scores)).round(4).tolist(),
            "error": risk.round(4).tolist(), "aurc": float(risk.mean())}


def applied(scores: np.ndarray, wrong: np.ndarray, threshold: float, temporal: np.ndarray | None = None) -> dict:
    """What a threshold does on a split: review rate, auto-accepted error (and with the late
    temporal review on top, when given)."""
    def outcome(accepted: np.ndarray) -> dict:
        return {"review_rate": round(1 - accepted.mean(), 4) if len(accepted) else None,
                "auto_accepted": int(accepted.sum()), "auto_accepted_errors": int(wrong[accepted].sum()),
                "auto_accepted_error": round(float(wrong[accepted].mean()), 4) if accepted.any() else None}

    accepted = scores <= threshold
    out = {"segments": len(scores), **outcome(accepted)}
    if temporal is not None:
        out["with_temporal"] = {**outcome(accepted & ~temporal),
                                "late_reviews": int((accepted & temporal).sum()),
                                "late_reviews_wrong": int((accepted & temporal & wrong).sum())}
    return out


def fit_routing(observations: list[Observation], alpha: float = 0.02, delta: float = 0.1) -> tuple[RoutingCard, dict]:
    """The routing card and the report (curves, ablation, checks) from labelled observations."""
    if not 0 < alpha < 1 or not 0 < delta < 1:
        raise RoutingDataError(f"alpha and delta must lie in (0, 1), got {alpha}, {delta}")
    parts = split_streams(observations)
    fit, cal, test = parts["fit"], parts["calibration"], parts["test"]
    params = fit_score(fit)
    fit_scores, fit_wrong = scores_of(params, fit), np.array([o.wrong for o in fit])
    cal_scores, cal_wrong = scores_of(params, cal), np.array([o.wrong for o in cal])
    rho = intra_stream_correlation(fit)
    cal_streams = np.array([o.stream for o in cal])
    point = choose_threshold(grid_of(fit_scores), cal_scores, cal_wrong, alpha, delta, fit_scores, fit_wrong,
                             cal_streams, rho)
    test_scores, test_wrong = scores_of(params, test), np.array([o.wrong for o in test])
    test_temporal = np.array([o.temporal for o in test])

    # Confidence alone, through the same procedure: what the other signals add.
    doubt = lambda obs: np.array([1.0 - o.prediction.confidence for o in obs])  # noqa: E731
    fit_doubt, test_doubt = doubt(fit), doubt(test)
    conf_point = choose_threshold(grid_of(fit_doubt), doubt(cal), cal_wrong, alpha, delta, fit_doubt,
                                  fit_wrong, cal_streams, rho)
    ablation = {}
    for name in FEATURE_NAMES:
        reduced = fit_score(fit, tuple(f for f in FEATURE_NAMES if f != name))
        ablation[name] = round(risk_coverage(scores_of(reduced, test), test_wrong)["aurc"], 4)

    card = _card(params, threshold=point["threshold"], alpha=alpha, delta=delta,
                 calibration={k: point[k] for k in ("n", "accepted", "errors", "upper_bound", "review_rate")},
                 reference=drift_reference(cal, cal_scores, point["threshold"]), fitted_at=utc_now())
    report = {
        "method": METHOD, "alpha": alpha, "delta": delta, "intra_stream_correlation": round(rho, 4),
        "segments": {k: len(v) for k, v in parts.items()},
        "streams": {k: len({o.stream for o in v}) for k, v in parts.items()},
        "model_accuracy": {k: round(1 - float(np.mean([o.wrong for o in v])), 4) for k, v in parts.items()},
        "features": [{"name": n, "what": w, "weight": round(c, 4)} for (n, w), c in zip(FEATURES, params["coef"])],
        "operating_point": point, "confidence_only_operating_point": conf_point,
        "test": {"combined": applied(test_scores, test_wrong, point["threshold"], test_temporal),
                 "confidence_only": applied(test_doubt, test_wrong, conf_point["threshold"])},
        "risk_coverage": {"combined": risk_coverage(test_scores, test_wrong),
                          "confidence_only": risk_coverage(test_doubt, test_wrong)},
        "aurc_without": ablation,
    }
    return card, report


def drift_reference(cal: list[Observation], scores: np.ndarray, threshold: float) -> dict:
    """What a stream like the calibration ones looks like, for the drift gauges."""
    novelty = [o.prediction.signals.novelty for o in cal if o.prediction.signals.novelty is not None]
    evidence = [o.prediction.signals.evidence for o in cal]
    by_stream: dict[str, list[float]] = {}
    for o in cal:
        by_stream.setdefault(o.stream, []).append(o.prediction.signals.evidence)
    # the drift gauge is a stream's median over its last segments: compare like with like
    stream_medians = [float(np.median(v)) for v in by_stream.values()]
    return {"confidence_mean": round(float(np.mean([o.prediction.confidence for o in cal])), 4),
            "evidence_median": round(float(np.median(evidence)), 4),
            "evidence_stream_p05": round(float(np.quantile(stream_medians, 0.05)), 4),
            "novelty_mean": round(float(np.mean(novelty)), 4) if novelty else None,
            "novelty_p95": round(float(np.quantile(novelty, 0.95)), 4) if novelty else None,
            "review_rate": round(float((scores > threshold).mean()), 4)}
