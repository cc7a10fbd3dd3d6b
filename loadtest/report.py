"""What people look at: JSON and CSV of a load test, PNG plots next to them, one HTML page.
Plots use matplotlib's file backend; the HTML references the PNGs beside it."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Optional

from .generator import StageRun
from .recommend import Recommendation
from .simulator import Simulation
from .stats import LoadTestResult, StepStats

STEP_COLUMNS = ("index", "offered_per_min", "seconds", "sent", "ok", "errors", "error_rate",
                "achieved_per_min", "p50_ms", "p90_ms", "p99_ms", "max_ms", "service_p50_ms",
                "send_lag_p99_ms")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_steps_csv(steps: list[StepStats], path: Path) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*STEP_COLUMNS, "errors_by_code"])
        for s in steps:
            w.writerow([getattr(s, c) for c in STEP_COLUMNS]
                       + [";".join(f"{k}={v}" for k, v in sorted(s.errors_by_code.items()))])
    return path


def write_samples_csv(runs: list[StageRun], path: Path) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "sequence", "scheduled_s", "sent_s", "done_s", "latency_ms", "code", "http_status"])
        for r in runs:
            for s in r.samples:
                done = s.completed
                w.writerow([s.stage, s.sequence, f"{s.scheduled:.4f}", f"{s.sent:.4f}" if done else "",
                            f"{s.done:.4f}" if done else "", f"{s.latency_ms:.1f}" if done else "",
                            s.code if done else "no_answer", s.http_status or ""])
    return path


def plot_capacity(result: LoadTestResult, rec: Optional[Recommendation], path: Path) -> Path:
    """Latency percentiles, achieved throughput and errors against the offered rate."""
    plt = _pyplot()
    steps = sorted(result.steps, key=lambda s: s.offered_per_min)
    x = [s.offered_per_min / result.instances for s in steps]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, style in (("p50", "o-"), ("p90", "s-"), ("p99", "^--")):
        pts = [(xi, s.percentile_ms(name)) for xi, s in zip(x, steps) if s.percentile_ms(name) is not None]
        if pts:
            ax1.plot(*zip(*pts), style, label=f"{name} (from scheduled send)")
    if rec is not None:
        slo = rec.search.slo
        ax1.axhline(slo.latency_ms, color="red", ls=":", label=f"SLO {slo.percentile} ≤ {slo.latency_ms:g} ms")
        if rec.max_rate_per_instance:
            ax1.axvline(rec.max_rate_per_instance, color="green", ls=":",
                        label=f"max meeting SLO: {rec.max_rate_per_instance:g}/min")
            ax1.axvline(rec.target_value, color="purple", ls="--",
                        label=f"target value: {rec.target_value}/min")
    ax1.set_xlabel("offered invocations/min per instance")
    ax1.set_ylabel("latency (ms)")
    ax1.set_yscale("log")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    ax1.set_title("latency vs load")
    ax2.plot(x, [s.achieved_per_min / result.instances for s in steps], "o-", label="achieved (ok/min)")
    if x:
        ax2.plot([0, max(x)], [0, max(x)], color="grey", ls=":", label="offered")
    ax2.set_xlabel("offered invocations/min per instance")
    ax2.set_ylabel("successful invocations/min per instance")
    ax2.grid(True, alpha=0.3)
    ax3 = ax2.twinx()
    ax3.bar(x, [100 * s.error_rate for s in steps], width=max(x) / 40 if x else 1, color="red", alpha=0.35,
            label="errors (%)")
    ax3.set_ylabel("errors (%)")
    ax3.set_ylim(0, 100)
    lines = ax2.get_legend_handles_labels()
    bars = ax3.get_legend_handles_labels()
    ax2.legend(lines[0] + bars[0], lines[1] + bars[1], fontsize=8, loc="upper left")
    ax2.set_title("throughput and errors")
    fig.suptitle(f"{result.target} — {result.started_at}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_timeline(runs: list[StageRun], path: Path) -> Path:
    """Every request: latency from its scheduled time, errors in red, the offered rate behind."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 4))
    ok = [(s.scheduled, s.latency_ms) for r in runs for s in r.samples if s.ok]
    bad = [(s.scheduled, s.latency_ms if s.completed else float("nan")) for r in runs for s in r.samples
           if not s.ok]
    if ok:
        ax.scatter(*zip(*ok), s=6, label="ok")
    if bad:
        ax.scatter(*zip(*bad), s=14, marker="x", color="red", label="error")
    ax.set_yscale("log")
    ax.set_xlabel("scheduled send time (s since start)")
    ax.set_ylabel("latency (ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax2 = ax.twinx()
    for r in runs:
        ax2.hlines(r.stage.rate_per_min, r.start, r.start + r.stage.seconds, color="grey", alpha=0.6)
    ax2.set_ylabel("offered rate (/min)", color="grey")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("each request (open loop: latency counted from the scheduled send)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_simulations(sims: list[Simulation], path: Path, title: str) -> Path:
    """Load and instances, p90 latency, errors per minute: one line per policy."""
    plt = _pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    minutes = [r.minute for r in sims[0].minutes]
    axes[0].plot(minutes, [r.offered for r in sims[0].minutes], color="black", lw=2, label="offered load (/min)")
    axes[0].set_ylabel("invocations/min")
    inst = axes[0].twinx()
    inst.set_ylabel("instances in service")
    for sim in sims:
        name = sim.policy.name
        inst.step(minutes, [r.in_service for r in sim.minutes], where="post", ls="--", label=f"{name}: instances")
        axes[1].plot(minutes, [r.p90_ms for r in sim.minutes], marker="o", ms=3, label=name)
        axes[2].plot(minutes, [r.errors for r in sim.minutes], marker="o", ms=3, label=name)
    inst.set_ylim(0, max(r.in_service for s in sims for r in s.minutes) + 1)
    h1, l1 = axes[0].get_legend_handles_labels()
    h2, l2 = inst.get_legend_handles_labels()
    axes[0].legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    axes[1].set_yscale("log")
    axes[1].axhline(1000, color="grey", ls=":")
    axes[1].set_ylabel("p90 latency (ms)")
    axes[1].legend(fontsize=8)
    axes[2].set_ylabel("errors per minute")
    axes[2].set_xlabel("minute")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- HTML ---------------------------------------------------------------------------------------

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}.pass{color:#070}.fail{color:#b00}img{max-width:100%}pre{background:#f6f6f6;padding:8px;
overflow-x:auto;font-size:12px}"""


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    return "–" if v is None else (f"{v:g}" if isinstance(v, float) else html.escape(str(v)))


def loadtest_html(result: LoadTestResult, rec: Optional[Recommendation], images: list[str],
                  applied: Optional[dict] = None) -> str:
    parts = [f"<h1>clipwatch load test</h1><p>{html.escape(result.target)} · {result.started_at} · "
             f"profile {html.escape(result.profile)} ({result.arrivals} arrivals) · "
             f"{result.duration_s:g} s · {result.instances} instance(s)</p>"]
    if result.command:
        parts.append(f"<pre>{html.escape(result.command)}</pre>")
    parts.append(f"<p>Machine: {html.escape(json.dumps(result.machine))}</p>")
    if result.unreachable:
        parts.append(f"<h2 class=fail>Target unreachable</h2><p>{html.escape(result.unreachable)}</p>"
                     "<p>Nothing was sent; no capacity was measured.</p>")
    if result.interrupted:
        parts.append("<p class=fail>The run was interrupted: the steps below are what was reached.</p>")
    if rec is not None:
        cls = "pass" if rec.target_value is not None else "fail"
        parts.append(f"<h2>Recommendation</h2><p class={cls}>{html.escape(rec.summary)}</p>"
                     f"<p>SLO search: {html.escape(rec.search.summary)}</p>")
        if applied:
            parts.append(f"<p>Applied through Application Auto Scaling: <code>{html.escape(json.dumps(applied))}</code></p>")
        if rec.scaling_policy:
            parts.append("<h3>Application Auto Scaling</h3><pre>" + html.escape(json.dumps(
                {"RegisterScalableTarget": rec.scalable_target, "PutScalingPolicy": rec.scaling_policy},
                indent=2)) + "</pre><h3>CloudFormation parameters</h3><pre>"
                + html.escape(json.dumps(rec.cloudformation_parameters, indent=2)) + "</pre>")
    verdicts = {v.step: v for v in rec.search.verdicts} if rec else {}
    rows = []
    for s in result.steps:
        v = verdicts.get(s.index)
        verdict = "" if v is None else (f"<span class=pass>meets</span>" if v.passed else
                                        f"<span class=fail>{html.escape('; '.join(v.reasons))}</span>")
        codes = ", ".join(f"{k}: {n}" for k, n in sorted(s.errors_by_code.items()))
        rows.append([_fmt(s.offered_per_min), _fmt(s.seconds), s.sent, s.ok, f"{s.error_rate:.1%}",
                     _fmt(s.achieved_per_min), _fmt(s.p50_ms), _fmt(s.p90_ms), _fmt(s.p99_ms),
                     _fmt(s.service_p50_ms), _fmt(s.send_lag_p99_ms), html.escape(codes), verdict])
    if rows:
        parts.append("<h2>Steps</h2>" + _table(
            ["offered /min", "s", "sent", "ok", "errors", "achieved /min", "p50 ms", "p90 ms", "p99 ms",
             "service p50 ms", "send lag p99 ms", "error codes", "SLO"], rows)
            + "<p>Latency is measured from each request's scheduled send time (open loop), over "
              "successful requests; <em>service</em> is from the actual send. Send lag is the "
              "generator's own lateness.</p>")
    parts += [f'<p><img src="{html.escape(i)}" alt="{html.escape(i)}"></p>' for i in images]
    return _page("clipwatch load test", parts)


def simulation_html(sims: list[Simulation], image: str, title: str, curve_note: str) -> str:
    parts = [f"<h1>{html.escape(title)}</h1><p>Capacity curve: {html.escape(curve_note)}; "
             f"requests waiting longer than {sims[0].timeout_s:g} s fail.</p>"]
    rows = [[html.escape(s.policy.describe()), s.summary["peak_instances"], s.summary["instance_minutes"],
             _fmt(s.summary["worst_p90_ms"]), _fmt(s.summary["first_minute_over_1s"]),
             s.summary["minutes_over_1s"], _fmt(s.summary["errors"]), f"{s.summary['error_rate']:.1%}"]
            for s in sims]
    parts.append(_table(["policy", "peak instances", "instance-minutes", "worst p90 ms",
                         "first minute p90 > 1 s", "minutes > 1 s", "errors", "error rate"], rows))
    parts.append(f'<p><img src="{html.escape(image)}" alt="simulation"></p>')
    for s in sims:
        parts.append(f"<h3>{html.escape(s.policy.name)}</h3>" + _table(
            ["minute", "offered", "in service", "desired", "per instance", "p90 ms", "errors", "backlog"],
            [[r.minute, _fmt(r.offered), r.in_service, r.desired, _fmt(r.per_instance), _fmt(r.p90_ms),
              _fmt(r.errors), _fmt(r.backlog)] for r in s.minutes]))
    return _page(title, parts)


def _page(title: str, parts: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def write_loadtest_report(out: Path, result: LoadTestResult, runs: list[StageRun],
                          rec: Optional[Recommendation], applied: Optional[dict] = None) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"result": out / "result.json"}
    files["result"].write_text(result.model_dump_json(indent=2))
    if rec is not None:
        files["recommendation"] = out / "recommendation.json"
        doc = json.loads(rec.model_dump_json())
        if applied:
            doc["applied"] = applied
        files["recommendation"].write_text(json.dumps(doc, indent=2))
        if rec.cloudformation_parameters:
            files["cfn_parameters"] = out / "cloudformation-parameters.json"
            files["cfn_parameters"].write_text(json.dumps(rec.cloudformation_parameters, indent=2))
    files["steps"] = write_steps_csv(result.steps, out / "steps.csv")
    images = []
    if runs:
        files["samples"] = write_samples_csv(runs, out / "samples.csv")
        files["timeline"] = plot_timeline(runs, out / "timeline.png")
        images.append("timeline.png")
    if result.steps:
        files["capacity"] = plot_capacity(result, rec, out / "capacity.png")
        images.insert(0, "capacity.png")
    files["html"] = out / "report.html"
    files["html"].write_text(loadtest_html(result, rec, images, applied))
    return files


def write_simulation_report(out: Path, sims: list[Simulation], title: str, curve_note: str,
                            stem: str = "simulation") -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / f"{stem}.json"}
    files["json"].write_text(json.dumps([json.loads(s.model_dump_json()) for s in sims], indent=2))
    files["png"] = plot_simulations(sims, out / f"{stem}.png", title)
    files["html"] = out / f"{stem}.html"
    files["html"].write_text(simulation_html(sims, f"{stem}.png", title, curve_note))
    return files
