"""The load generator, its statistics, the SLO search and the recommendation, against real HTTP
servers on loopback (a deliberately slow one, and the real endpoint with a tiny model) and
Application Auto Scaling on moto's server."""

from __future__ import annotations

import asyncio
import json
import math
import random
import subprocess
import sys

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from inference.server import BackgroundServer
from loadtest.generator import OpenLoopGenerator
from loadtest.profiles import ProfileError, Stage, arrival_offsets, parse_rates, ramp_profile, step_profile
from loadtest.recommend import PolicySettings, apply, recommend
from loadtest.slo import Slo, best_rate
from loadtest.stats import StepStats, step_stats
from loadtest.targets import HttpTarget, SageMakerTarget, TargetUnreachable, payload


def slow_app(service_s: float) -> FastAPI:
    """One request at a time, ``service_s`` each; a URI containing 'bad' gets the endpoint's
    422 error body."""
    app = FastAPI()
    lock = asyncio.Lock()

    @app.get("/ping")
    async def ping():
        return {"status": "healthy"}

    @app.post("/invocations")
    async def invocations(request: Request):
        body = await request.json()
        async with lock:
            await asyncio.sleep(service_s)
        if "bad" in (body.get("uri") or ""):
            return JSONResponse({"error": {"code": "undecodable_video", "message": "no"}}, status_code=422)
        return {"label": "x", "sequence": body["sequence"]}

    return app


@pytest.fixture(scope="module")
def slow_server():
    with BackgroundServer(slow_app(0.1)) as server:
        yield server


def run_cli(*args):
    """The command in this process (its imports are warm); exit code and stderr."""
    import contextlib
    import io

    from clipwatch.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["loadtest", *args])
    return subprocess.CompletedProcess(args, code, "", err.getvalue())


# --- profiles -------------------------------------------------------------------------------

def test_profiles_and_their_schedules():
    steps = step_profile([30, 60], 10)
    assert steps == [Stage(30, 10), Stage(60, 10)]
    ramp = ramp_profile(0, 120, 60, 20)
    assert [s.rate_per_min for s in ramp] == [20, 60, 100] and sum(s.seconds for s in ramp) == 60
    uniform = arrival_offsets(Stage(120, 10), 5.0, False, random.Random(0))
    assert len(uniform) == 20 and uniform[0] == pytest.approx(5.25) and uniform[-1] < 15
    assert all(b - a == pytest.approx(0.5) for a, b in zip(uniform, uniform[1:]))
    poisson = arrival_offsets(Stage(600, 60), 0.0, True, random.Random(3))
    assert 500 < len(poisson) < 700 and poisson == arrival_offsets(Stage(600, 60), 0.0, True, random.Random(3))


@pytest.mark.parametrize("make, message", [
    (lambda: step_profile([30, -5], 10), "rate #2 must be a positive number"),
    (lambda: step_profile([30, float("nan")], 10), "rate #2 must be a positive number"),
    (lambda: step_profile([1e9], 10), "above the generator's limit"),
    (lambda: step_profile([30], 0), "--step-seconds must be a positive number of seconds"),
    (lambda: step_profile([], 10), "--rates needs at least one rate"),
    (lambda: step_profile([1], 1), "fewer than one request"),
    (lambda: ramp_profile(10, 100, 30, 60), "longer than the ramp"),
    (lambda: ramp_profile(10, 100, -1, 10), "--duration must be a positive"),
    (lambda: parse_rates("30,abc"), "'abc' is not a number"),
])
def test_nonsense_profiles_are_refused_with_the_value_named(make, message):
    with pytest.raises(ProfileError, match=message.replace("(", r"\(")):
        make()


# --- the open loop --------------------------------------------------------------------------

def test_latency_counts_from_the_scheduled_time_so_a_slow_server_cannot_hide(slow_server):
    """One sender against a server taking 0.1 s, asked for 20 requests/s: a closed loop would
    report ~100 ms per request; the open loop reports the queue behind it too."""
    target = HttpTarget(slow_server.url, timeout_s=30, max_connections=1)
    gen = OpenLoopGenerator(target, lambda i: payload("/seg/ok.ts", "s", i), max_in_flight=1)
    run = gen.run([Stage(1200, 1.0)])[0]
    target.close()
    stats = step_stats(run)
    assert stats.sent == 20 and stats.ok == 20 and stats.errors == 0
    assert stats.service_p50_ms < 400                  # what each request took once sent
    assert stats.p90_ms > 4 * stats.service_p50_ms     # what a caller due at that time waited
    last = max(run.samples, key=lambda s: s.scheduled)
    assert last.latency_ms > 700                       # 20 × 0.1 s of work queued behind it
    assert stats.achieved_per_min < 0.8 * 1200         # the server did not keep up


def test_the_schedule_is_kept_while_answers_are_slow(slow_server):
    target = HttpTarget(slow_server.url, timeout_s=30, max_connections=32)
    gen = OpenLoopGenerator(target, lambda i: payload("/seg/ok.ts", "s", i), max_in_flight=32)
    run = gen.run([Stage(900, 2.0)])[0]
    target.close()
    stats = step_stats(run)
    assert stats.sent == 30 and stats.ok == 30
    # the server needs 30 × 0.1 s = 3 s for the answers; the requests left on schedule anyway
    assert max(s.sent for s in run.samples) < 2.0 + 0.6
    assert max(s.done for s in run.samples) > 3.0
    assert stats.send_lag_p99_ms < 600
    assert [s.sequence for s in run.samples] == list(range(30))


def test_errors_are_counted_by_code_and_stop_nothing(slow_server):
    target = HttpTarget(slow_server.url, timeout_s=30, max_connections=8)
    uris = ["/seg/ok.ts", "/seg/bad.ts"]
    gen = OpenLoopGenerator(target, lambda i: payload(uris[i % 2], "s", i), max_in_flight=8)
    stats = step_stats(gen.run([Stage(600, 1.0)])[0])
    target.close()
    assert stats.sent == 10 and stats.ok == 5
    assert stats.errors_by_code == {"undecodable_video": 5} and stats.error_rate == 0.5


def test_an_unreachable_target_says_where():
    from clipwatch.localstack import free_port

    url = f"http://127.0.0.1:{free_port()}"
    target = HttpTarget(url, timeout_s=2, max_connections=1)
    with pytest.raises(TargetUnreachable, match=f"nothing answers at {url}/ping"):
        target.check(b"{}")
    assert target.invoke(b"{}").code == "connection_error"
    target.close()


# --- SLO and recommendation -----------------------------------------------------------------

def _step(i, rate, p90, errors=0.0, sent=100) -> StepStats:
    return StepStats(index=i, offered_per_min=rate, seconds=60, sent=sent, completed=sent,
                     ok=round(sent * (1 - errors)), errors=round(sent * errors), error_rate=errors,
                     errors_by_code={}, achieved_per_min=rate * (1 - errors), p50_ms=p90 * 0.8,
                     p90_ms=p90, p99_ms=p90 * 1.5)


def test_the_seed_numbers_give_the_seed_target():
    """600/min at ~300 ms with < 5% errors, safety factor 0.5 → target 300 (the seed)."""
    steps = [_step(0, 300, 280), _step(1, 600, 310, 0.03), _step(2, 900, 1400, 0.08)]
    search = best_rate(steps, Slo(latency_ms=350))
    assert search.max_rate_per_instance == 600 and search.best_step == 1
    assert [v.passed for v in search.verdicts] == [True, True, False]
    assert "p90 1400 ms > 350 ms" in search.verdicts[2].reasons[0]
    rec = recommend(search, PolicySettings())
    assert rec.target_value == 300
    policy = rec.scaling_policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["TargetValue"] == 300.0
    assert policy["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert rec.scalable_target["ResourceId"] == "endpoint/clipwatch/variant/AllTraffic"
    params = {p["ParameterKey"]: p["ParameterValue"] for p in rec.cloudformation_parameters}
    assert params["TargetInvocationsPerInstance"] == "300" and params["InstanceType"] == "ml.g4dn.2xlarge"


def test_rates_are_per_instance_and_the_target_rounds_down():
    search = best_rate([_step(0, 1001, 200)], Slo(latency_ms=300), instances=2)
    assert search.max_rate_per_instance == 500.5
    assert recommend(search, PolicySettings(safety_factor=0.5)).target_value == 250


def test_an_slo_no_load_meets_says_what_was_reached():
    search = best_rate([_step(0, 30, 900), _step(1, 60, 1500, 0.2)], Slo(latency_ms=500))
    assert search.max_rate_per_min is None and search.max_rate_per_instance is None
    assert search.summary.startswith("no load met the SLO (p90 ≤ 500 ms and errors < 5%)")
    assert "30/min, had p90 900 ms > 500 ms" in search.summary
    rec = recommend(search, PolicySettings())
    assert rec.target_value is None and rec.scaling_policy is None
    with pytest.raises(ValueError, match="nothing to apply"):
        apply(rec)


def test_apply_registers_the_policy_with_application_auto_scaling(aws):
    import boto3

    search = best_rate([_step(0, 600, 300)], Slo(latency_ms=350))
    rec = recommend(search, PolicySettings(endpoint_name="lt-apply", min_instances=1, max_instances=4))
    applied = apply(rec)
    assert applied["target_value"] == 300.0 and applied["max_capacity"] == 4
    client = boto3.client("application-autoscaling")
    policies = client.describe_scaling_policies(ServiceNamespace="sagemaker",
                                                ResourceId="endpoint/lt-apply/variant/AllTraffic")["ScalingPolicies"]
    assert len(policies) == 1 and policies[0]["PolicyType"] == "TargetTrackingScaling"
    assert policies[0]["TargetTrackingScalingPolicyConfiguration"]["ScaleOutCooldown"] == 600


# --- the command, end to end against the real endpoint ---------------------------------------

@pytest.fixture(scope="module")
def segments(tmp_path_factory):
    """Two short real H.264 segments: the load test measures the endpoint, not the decoder."""
    from clipwatch.testmedia import render_segment

    d = tmp_path_factory.mktemp("lt-media")
    return [render_segment(d / f"lt_{i:05d}.ts", seconds=2, size=(320, 240), seed=i) for i in (1, 2)]


@pytest.fixture(scope="module")
def endpoint(tiny_model_dir, segments, tmp_path_factory):
    from clipwatch.config import Settings
    from inference.server import build_app

    db = tmp_path_factory.mktemp("lt-store") / "p.db"
    settings = Settings(store_url=f"sqlite:///{db}", allowed_dirs=(segments[0].parent.resolve(),))
    with BackgroundServer(build_app(str(tiny_model_dir), settings)) as server:
        yield server


def test_loadtest_run_writes_result_recommendation_report_and_applies(endpoint, segments, aws, tmp_path):
    import boto3

    uris = tmp_path / "segments.txt"
    uris.write_text(f"# two real segments\n{segments[0]}\n{segments[1]}\n")
    proc = run_cli("run", "--url", endpoint.url, "--uris-file", str(uris), "--rates", "60,120",
                   "--step-seconds", "5", "--slo-ms", "60000", "--endpoint-name", "lt-e2e",
                   "--apply", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    for name in ("result.json", "steps.csv", "samples.csv", "recommendation.json",
                 "cloudformation-parameters.json", "capacity.png", "timeline.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    result = json.loads((out / "result.json").read_text())
    assert [s["offered_per_min"] for s in result["steps"]] == [60, 120]
    assert [s["sent"] for s in result["steps"]] == [5, 10]
    assert all(s["errors"] == 0 and s["p90_ms"] > 0 for s in result["steps"])
    assert "clipwatch loadtest run --url" in result["command"]
    samples = (out / "samples.csv").read_text().splitlines()
    assert len(samples) == 1 + 15 and all(line.split(",")[6] == "ok" for line in samples[1:])
    rec = json.loads((out / "recommendation.json").read_text())
    assert rec["max_rate_per_instance"] == 120 and rec["target_value"] == 60
    assert rec["applied"]["target_value"] == 60.0
    policy = boto3.client("application-autoscaling").describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId="endpoint/lt-e2e/variant/AllTraffic")["ScalingPolicies"][0]
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 60.0
    html = (out / "report.html").read_text()
    assert "capacity.png" in html and "target SageMakerVariantInvocationsPerInstance = 60" in html


def test_sagemaker_runtime_target_maps_model_errors_to_the_endpoint_codes(endpoint, segments):
    target = SageMakerTarget("clipwatch", timeout_s=60, max_connections=2, endpoint_url=endpoint.url,
                             region="us-east-1")
    assert target.invoke(payload(str(segments[0]), "sm", 1)).ok
    missing = target.invoke(payload(str(segments[0].parent / "nope.ts"), "sm", 2))
    assert (missing.ok, missing.code, missing.http_status) == (False, "segment_not_found", 404)
    target.close()


def test_an_unreachable_endpoint_gives_a_message_and_a_report(tmp_path):
    from clipwatch.localstack import free_port

    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run([sys.executable, "-m", "clipwatch.cli", "loadtest", "run", "--url", url,
                           "--uri", "/data/seg_1.ts", "--rates", "30", "--step-seconds", "2",
                           "--slo-ms", "1000", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"nothing answers at {url}/ping" in proc.stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["unreachable"].startswith("nothing answers") and result["steps"] == []
    assert "Target unreachable" in (tmp_path / "out" / "report.html").read_text()


def test_an_slo_no_load_meets_exits_3_with_a_report(slow_server, tmp_path):
    proc = run_cli("run", "--url", slow_server.url, "--uri", "/seg/ok.ts", "--rates", "120,240",
                   "--step-seconds", "2", "--slo-ms", "1", "--search", "--out", str(tmp_path / "out"))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "no load met the SLO" in proc.stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert len(result["steps"]) == 1  # --search stopped at the first step breaking the SLO
    rec = json.loads((tmp_path / "out" / "recommendation.json").read_text())
    assert rec["target_value"] is None and "no load met the SLO" in rec["summary"]
    assert not (tmp_path / "out" / "cloudformation-parameters.json").exists()


def test_search_refines_between_the_last_pass_and_the_first_fail(slow_server, tmp_path):
    """0.1 s a request, one at a time: 300/min keeps up, 1200/min cannot."""
    proc = run_cli("run", "--url", slow_server.url, "--uri", "/seg/ok.ts", "--rates", "150,900",
                   "--step-seconds", "2", "--slo-ms", "400", "--search", "--refine", "2",
                   "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    rates = [s["offered_per_min"] for s in result["steps"]]
    assert rates[:3] == [150, 900, 525] and len(rates) == 4
    rec = json.loads((tmp_path / "out" / "recommendation.json").read_text())
    assert rec["max_rate_per_instance"] in rates and rec["max_rate_per_instance"] >= 120


@pytest.mark.parametrize("args, message", [
    (["--rates", "30,-1"], "rate #2 must be a positive number"),
    (["--rates", "30", "--step-seconds", "0"], "--step-seconds must be a positive number"),
    (["--profile", "ramp", "--start-rate", "10", "--end-rate", "5e9"], "above the generator's limit"),
    (["--rates", "30", "--slo-ms", "-5"], "SLO: latency_ms"),
    (["--rates", "30", "--min-instances", "4", "--max-instances", "2"], "below --min-instances"),
])
def test_bad_arguments_are_refused_before_sending(args, message, tmp_path):
    base = ["run", "--url", "http://127.0.0.1:9", "--uri", "/x/seg.ts", "--slo-ms", "100", "--out", str(tmp_path)]
    proc = run_cli(*base, *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_a_bad_uri_list_names_the_file_and_line(tmp_path):
    f = tmp_path / "uris.txt"
    f.write_text("s3://b/seg_1.ts\n\nhttp://nope/seg.ts\n")
    proc = run_cli("run", "--url", "http://127.0.0.1:9", "--uris-file", str(f), "--slo-ms", "100",
                   "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and f"{f}:3: 'http://nope/seg.ts' is not s3://" in proc.stderr


def test_recommend_from_a_saved_result_with_another_slo(tmp_path):
    from loadtest.stats import LoadTestResult

    result = LoadTestResult(target="t", profile="p", arrivals="uniform", started_at="now", duration_s=1,
                            steps=[_step(0, 300, 280), _step(1, 600, 450), _step(2, 900, 2000)])
    (tmp_path / "result.json").write_text(result.model_dump_json())
    proc = run_cli("recommend", "--result", str(tmp_path / "result.json"), "--slo-ms", "500",
                   "--safety-factor", "0.4", "--instance-type", "ml.g5.xlarge")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "recommendation.json").read_text())
    assert rec["target_value"] == math.floor(600 * 0.4)
    params = json.loads((tmp_path / "cloudformation-parameters.json").read_text())
    assert {"ParameterKey": "InstanceType", "ParameterValue": "ml.g5.xlarge"} in params
    (tmp_path / "broken.json").write_text('{"steps": 3}')
    proc = run_cli("recommend", "--result", str(tmp_path / "broken.json"), "--slo-ms", "500")
    assert proc.returncode == 2 and "not a load-test result.json" in proc.stderr
