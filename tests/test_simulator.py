"""The capacity simulator: the seed's BEFORE/AFTER behaviour, the policy mechanics of target
tracking, curves from a load test, and the command's outputs."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from loadtest.simulator import CapacityCurve, Policy, ramp, simulate
from loadtest.stats import LoadTestResult, StepStats

SEED_LOAD = ramp(100, 1700, 15, hold=5)
BEFORE = Policy(name="before")
AFTER = Policy(name="after", target=300, min_instances=1, max_instances=3,
               scale_out_cooldown_s=600, scale_in_cooldown_s=600, startup_s=120)


def test_one_instance_alone_breaks_like_the_seeds_before_graph():
    sim = simulate(CapacityCurve.seed(), SEED_LOAD, BEFORE, timeout_s=8)
    p90 = [m.p90_ms for m in sim.minutes]
    errors = [m.errors for m in sim.minutes]
    assert all(m.in_service == 1 for m in sim.minutes)
    assert max(p90[:4]) <= 300                    # under 300 ms for the first minutes
    over = sim.summary["first_minute_over_1s"]
    assert over is not None and 4 <= over <= 8    # then past 1 s …
    assert max(p90) == 8000                       # … up to 8 s (the timeout), with errors
    ramping = errors[over:15]
    assert all(b >= a for a, b in zip(ramping, ramping[1:])) and ramping[-1] > 500
    assert sim.summary["error_rate"] > 0.3


def test_scaling_out_to_three_keeps_latency_near_300ms_like_the_after_graph():
    sim = simulate(CapacityCurve.seed(), SEED_LOAD, AFTER, timeout_s=8)
    before = simulate(CapacityCurve.seed(), SEED_LOAD, BEFORE, timeout_s=8)
    assert sim.summary["peak_instances"] == 3
    settled = [m for m in sim.minutes if m.in_service == 3]
    assert settled and all(m.p90_ms < 350 and m.errors < 0.01 * m.offered for m in settled)
    assert sim.minutes[-1].offered == 1700 and sim.minutes[-1].per_instance == pytest.approx(566.7, abs=0.1)
    # the only trouble is while the new instances start: minutes, not the whole ramp
    assert sim.summary["minutes_over_1s"] <= 3
    assert sim.summary["errors"] < before.summary["errors"] / 20


def test_scale_out_needs_three_datapoints_above_target_plus_start_up():
    load = [100] * 5 + [900] * 15
    sim = simulate(CapacityCurve.seed(), load, AFTER.model_copy(update={"startup_s": 240}))
    first = next(m.minute for m in sim.minutes if m.in_service > 1)
    # datapoints at minutes 5, 6, 7 → decision at the end of minute 7 → serving 4 min later
    assert first == 7 + 1 + 4
    assert sim.minutes[7].desired == 3 and sim.minutes[6].desired == 1


def test_a_slower_start_up_costs_more_errors_and_a_lower_target_scales_earlier():
    slow = simulate(CapacityCurve.seed(), SEED_LOAD, AFTER.model_copy(update={"startup_s": 480}))
    fast = simulate(CapacityCurve.seed(), SEED_LOAD, AFTER)
    eager = simulate(CapacityCurve.seed(), SEED_LOAD, AFTER.model_copy(update={"target": 200}))
    assert slow.summary["errors"] > fast.summary["errors"]
    first = lambda s: next(m.minute for m in s.minutes if m.desired > 1)  # noqa: E731
    assert first(eager) < first(fast)


def test_scale_in_waits_for_fifteen_low_datapoints_and_the_cooldowns():
    load = [900] * 10 + [100] * 30
    sim = simulate(CapacityCurve.seed(), load, AFTER)
    assert max(m.in_service for m in sim.minutes) == 3
    back = next(m.minute for m in sim.minutes if m.minute > 10 and m.in_service == 1)
    assert back >= 10 + 15
    assert sim.minutes[-1].in_service == 1


def test_a_curve_from_a_load_test_result():
    def step(i, rate, achieved, p90):
        return StepStats(index=i, offered_per_min=rate, seconds=30, sent=10, completed=10, ok=10, errors=0,
                         error_rate=0.0, errors_by_code={}, achieved_per_min=achieved, p90_ms=p90)

    result = LoadTestResult(target="t", instances=2, profile="p", arrivals="uniform", started_at="x",
                            duration_s=1, steps=[step(0, 60, 60, 900), step(1, 120, 118, 1000),
                                                 step(2, 240, 150, 9000)])
    curve = CapacityCurve.from_result(result)
    assert curve.capacity_per_min == 75                      # per instance: 150 / 2
    assert curve.rates_per_min == [30, 60]                   # the overloaded step is left out
    assert curve.p90_at(45) == pytest.approx(950)
    empty = LoadTestResult(target="t", profile="p", arrivals="uniform", started_at="x", duration_s=1)
    with pytest.raises(ValueError, match="no step with a successful request"):
        CapacityCurve.from_result(empty)


def test_bad_profiles_and_policies_are_refused():
    with pytest.raises(ValueError, match="a ramp needs minutes ≥ 1"):
        ramp(100, 200, 0)
    with pytest.raises(ValueError, match="max instances below min"):
        simulate(CapacityCurve.seed(), [100], Policy(name="x", min_instances=3, max_instances=2))


def cli(*args):
    from clipwatch.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["loadtest", "simulate", *args])
    return code, err.getvalue()


def test_simulate_command_writes_png_html_json(tmp_path):
    code, err = cli("--curve", "seed", "--out", str(tmp_path))
    assert code == 0, err
    sims = json.loads((tmp_path / "simulation.json").read_text())
    assert [s["policy"]["name"] for s in sims] == ["before: 1 instance", "after: target 300, 1–3 instances"]
    assert (tmp_path / "simulation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "simulation.html").read_text()
    assert "simulation.png" in html and "ramp 100→1700/min over 15 min" in html


def test_simulate_command_compares_given_policies_and_takes_a_recommendation(tmp_path):
    (tmp_path / "recommendation.json").write_text(json.dumps({"target_value": 250}))
    code, err = cli("--curve", "seed", "--recommendation", str(tmp_path / "recommendation.json"),
                    "--ramp", "100:900:5", "--out", str(tmp_path), "--stem", "rec")
    assert code == 0, err
    sims = json.loads((tmp_path / "rec.json").read_text())
    assert sims[1]["policy"]["name"] == "after: target 250, 1–3 instances"
    assert [m["offered"] for m in sims[0]["minutes"]] == [100, 300, 500, 700, 900]
    code, err = cli("--curve", "seed", "--policy", "name=fixed2,min=2,max=2", "--policy",
                    "name=t200,target=200,startup=300", "--out", str(tmp_path), "--stem", "cmp")
    assert code == 0, err
    sims = json.loads((tmp_path / "cmp.json").read_text())
    assert [s["policy"]["name"] for s in sims] == ["fixed2", "t200"]
    assert sims[1]["policy"]["max_instances"] == 3 and sims[1]["policy"]["startup_s"] == 300


@pytest.mark.parametrize("args, message", [
    (["--ramp", "100:abc"], "expected START:END:MINUTES[:HOLD]"),
    (["--ramp", "100:200:0"], "a ramp needs minutes ≥ 1"),
    (["--policy", "name=x,speed=3"], "'speed=3' is not one of"),
    (["--policy", "target=-3"], "target Input should be greater than 0"),
    (["--curve", "/nonexistent/result.json"], "/nonexistent/result.json: No such file"),
])
def test_simulate_command_refuses_nonsense_clearly(args, message, tmp_path):
    code, err = cli(*args, "--out", str(tmp_path))
    assert code == 2 and message in err, err
