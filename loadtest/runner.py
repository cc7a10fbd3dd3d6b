"""One load test from start to finish: check the target answers, run the profile open-loop
with a live progress display, and collect the result. With ``search`` the staircase stops at
the first step that breaks the SLO, then bisects between the last good and the first bad
rate (``refine`` more steps), each step measured from an empty queue."""

from __future__ import annotations

import itertools
import os
import platform
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .generator import OpenLoopGenerator, StageRun
from .profiles import Stage
from .slo import Slo, judge
from .stats import LoadTestResult, step_stats
from .targets import Target, TargetUnreachable, payload


@dataclass
class RunSpec:
    profile_name: str
    stages: list[Stage]
    uris: list[str]
    instances: int = 1
    max_in_flight: int = 64
    timeout_s: float = 30.0
    poisson: bool = False
    seed: int = 0
    search: Optional[Slo] = None    # stop at the first step breaking it, then refine
    refine: int = 0
    command: str = ""


def machine() -> dict:
    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def run(target: Target, spec: RunSpec, console: Console | None = None,
        stop: threading.Event | None = None) -> tuple[LoadTestResult, list[StageRun]]:
    """The result (per-step statistics) and the raw stage runs (every sample)."""
    console = console or Console(stderr=True)
    stream_id = f"loadtest-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    uris = itertools.cycle(spec.uris)
    lock = threading.Lock()

    def body_for(sequence: int) -> bytes:
        with lock:  # the round-robin is shared by the sender threads
            uri = next(uris)
        return payload(uri, stream_id, sequence)

    started = datetime.now(timezone.utc)
    result = LoadTestResult(target=target.description, instances=spec.instances,
                            profile=spec.profile_name, arrivals="poisson" if spec.poisson else "uniform",
                            started_at=started.isoformat(timespec="seconds"), duration_s=0.0,
                            command=spec.command, machine=machine())
    try:
        target.check(payload(spec.uris[0], f"{stream_id}-check", 0))
    except TargetUnreachable as exc:
        result.unreachable = str(exc)
        return result, []

    gen = OpenLoopGenerator(target, body_for, max_in_flight=spec.max_in_flight,
                            timeout_s=spec.timeout_s, poisson=spec.poisson, seed=spec.seed)
    stop = stop or threading.Event()
    runs: list[StageRun] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("load test", total=sum(s.seconds for s in spec.stages), info="")

        def on_stage(r: StageRun) -> None:
            progress.update(task, description=f"step at {r.stage.rate_per_min:g}/min")

        def watcher() -> None:  # refresh the counters while the generator keeps its schedule
            import time

            t0 = time.perf_counter()
            while not done.wait(0.5):
                progress.update(task, completed=min(time.perf_counter() - t0, progress.tasks[0].total),
                                info=f"{gen.completed} answered, {gen.errors} errors")

        def keep_going(r: StageRun) -> bool:
            v = judge(step_stats(r), spec.search)
            progress.console.print(f"  {r.stage.rate_per_min:g}/min: "
                                   + ("meets the SLO" if v.passed else "; ".join(v.reasons)))
            return v.passed

        done = threading.Event()
        threading.Thread(target=watcher, daemon=True).start()
        try:
            runs = gen.run(spec.stages, drain=spec.search is not None,
                           should_continue=keep_going if spec.search else None,
                           on_stage=on_stage, stop=stop)
            if spec.search and spec.refine:
                runs += _refine(gen, runs, spec, on_stage, keep_going, stop)
        except KeyboardInterrupt:
            stop.set()
            result.interrupted = True
        finally:
            done.set()
    for i, r in enumerate(runs):  # refinement steps come from separate generator runs
        r.index = i
        for sample in r.samples:
            sample.stage = i
    result.steps = [step_stats(r) for r in runs]
    result.duration_s = round((datetime.now(timezone.utc) - started).total_seconds(), 1)
    result.interrupted = result.interrupted or stop.is_set()
    return result, runs


def _refine(gen: OpenLoopGenerator, runs: list[StageRun], spec: RunSpec, on_stage, keep_going,
            stop: threading.Event) -> list[StageRun]:
    """Bisect between the highest passing and the lowest failing rate of the staircase."""
    verdicts = [(r.stage.rate_per_min, judge(step_stats(r), spec.search).passed) for r in runs]
    good = max((rate for rate, ok in verdicts if ok), default=None)
    bad = min((rate for rate, ok in verdicts if not ok and (good is None or rate > good)), default=None)
    extra: list[StageRun] = []
    seconds = spec.stages[0].seconds
    for _ in range(spec.refine):
        if good is None or bad is None or stop.is_set():
            break
        rate = round((good + bad) / 2, 1)
        if rate in (good, bad):
            break
        r = gen.run([Stage(rate, seconds)], drain=True, on_stage=on_stage, stop=stop)[0]
        extra.append(r)
        if keep_going(r):
            good = rate
        else:
            bad = rate
    return extra
