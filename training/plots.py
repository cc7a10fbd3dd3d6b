"""Evaluation figures written as PNG files: the confusion matrix, and reliability diagrams
before and after temperature scaling (the visual check that the review threshold is applied
to calibrated confidence).

Figures are built as ``matplotlib.figure.Figure`` objects, never through pyplot: pyplot
keeps global figures and picks a GUI backend, while a bare Figure renders PNG through Agg and
leaves the backend of any other code in the process alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

# Past this many classes the count labels overlap; the colors still show the pattern.
_MAX_ANNOTATED_CLASSES = 30


def _save(fig: Figure, out_png) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=120, bbox_inches="tight")
    return out


def _row_normalized(conf: np.ndarray) -> np.ndarray:
    # Colors by share of each true class, so a rare class's errors stand out as much as a
    # common one's; a class with no clips stays blank instead of dividing by zero.
    totals = conf.sum(axis=1, keepdims=True)
    return np.divide(conf, totals, out=np.zeros(conf.shape), where=totals > 0)


def _annotate_counts(ax, conf: np.ndarray, shares: np.ndarray) -> None:
    size = max(5, 11 - len(conf) // 4)
    for (row, col), count in np.ndenumerate(conf):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=size,
                color="white" if shares[row, col] > 0.5 else "black")


def plot_confusion(conf, classes: list[str], out_png, title: str) -> Path:
    """Heatmap of a confusion matrix (rows true, columns predicted): colors are row shares,
    cells show counts. Returns the PNG's path."""
    conf = np.asarray(conf)
    shares = _row_normalized(conf)
    side = min(4.0 + 0.45 * len(classes), 40.0)
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(classes) <= _MAX_ANNOTATED_CLASSES:
        _annotate_counts(ax, conf, shares)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    return _save(fig, out_png)


def _reliability_panel(ax_bars, ax_counts, bins: list[dict], title: str) -> None:
    filled = [b for b in bins if b["count"]]  # an empty bin has no accuracy to draw
    lower = np.array([b["lower"] for b in filled])
    width = np.array([b["upper"] - b["lower"] for b in filled])
    accuracy = np.array([b["accuracy"] for b in filled])
    confidence = np.array([b["confidence"] for b in filled])
    ax_bars.bar(lower, accuracy, width=width, align="edge", color="tab:blue",
                edgecolor="black", linewidth=0.5, label="accuracy")
    # The gap from each bar to its mean confidence is the bin's term in the ECE.
    ax_bars.bar(lower, confidence - accuracy, bottom=accuracy, width=width, align="edge",
                color="tab:red", alpha=0.3, hatch="//", edgecolor="tab:red", linewidth=0.5,
                label="gap to confidence")
    ax_bars.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax_bars.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title)
    ax_bars.legend(loc="upper left", fontsize=8)
    ax_bars.tick_params(labelbottom=False)
    ax_counts.bar([b["lower"] for b in bins], [b["count"] for b in bins], align="edge",
                  width=[b["upper"] - b["lower"] for b in bins], color="gray")
    ax_counts.set(xlim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="clips")


def plot_reliability(bins_before: list[dict], bins_after: list[dict], out_png,
                     ece_before: float, ece_after: float) -> Path:
    """Reliability diagrams (``calibration.reliability`` rows) before and after temperature
    scaling, side by side, each over a histogram of clips per bin. Returns the PNG's path."""
    fig = Figure(figsize=(11, 5.5))
    grid = fig.add_gridspec(2, 2, height_ratios=(3, 1), hspace=0.08, wspace=0.25)
    for col, (bins, title) in enumerate(((bins_before, f"Before scaling — ECE {ece_before:.3f}"),
                                         (bins_after, f"After scaling — ECE {ece_after:.3f}"))):
        ax_bars = fig.add_subplot(grid[0, col])
        _reliability_panel(ax_bars, fig.add_subplot(grid[1, col], sharex=ax_bars), bins, title)
    return _save(fig, out_png)


def plot_risk_coverage(report: dict, out_png) -> Path:
    """Auto-accepted error against review rate on the test streams, for confidence alone and
    for the combined review score, with the target α and each one's chosen operating point."""
    fig = Figure(figsize=(7.5, 5))
    ax = fig.add_subplot()
    curves = report["risk_coverage"]
    for key, name, colour in (("confidence_only", "confidence alone", "tab:gray"),
                              ("combined", "combined review score", "tab:blue")):
        c = curves[key]
        ax.plot(c["review_rate"], c["error"], color=colour, label=f"{name} (AURC {c['aurc']:.4f})")
        point = report["test"][key]
        if point["auto_accepted_error"] is not None:
            ax.scatter([point["review_rate"]], [point["auto_accepted_error"]], color=colour, zorder=3,
                       edgecolor="black", s=60,
                       label=f"{name}: chosen on calibration → review {point['review_rate']:.0%}, "
                             f"error {point['auto_accepted_error']:.1%}")
    ax.axhline(report["alpha"], linestyle="--", color="tab:red", label=f"α = {report['alpha']:.0%}")
    ax.set(xlim=(0, 1), ylim=(0, None), xlabel="review rate (share of segments sent to people)",
           ylabel="error of auto-accepted segments",
           title=f"Risk–coverage on {report['segments']['test']} test segments "
                 f"({report['streams']['test']} streams)")
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, out_png)


def plot_gate(gate: dict, out_png) -> Path:
    """The retrain gate (``training.retrain``): serving against candidate top-1 on the frozen
    held-out set and on the held-out reviewed clips, with the counts behind each bar."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    sets = [("held_out", "frozen held-out set"), ("reviewed", "held-out reviewed clips")]
    x = np.arange(len(sets))
    for offset, who, version in ((-0.2, "old", gate["old_version"]), (0.2, "new", gate["new_version"])):
        tops = [gate[name][f"{who}_top1"] for name, _ in sets]
        bars = ax.bar(x + offset, tops, 0.4, label=version)
        for bar, (name, _) in zip(bars, sets):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
                    f"{gate[name][f'{who}_correct']}/{gate[name]['clips']}", ha="center", fontsize=8)
    ax.set_xticks(x, [label for _, label in sets])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("top-1")
    verdict = "promoted" if gate.get("passed") else "not promoted"
    ax.set_title(f"retrain gate: {verdict} (at least as good held out, better on reviewed)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out_png)
