"""`clipwatch loadtest run|recommend|simulate`: open-loop load tests, the SLO search and
autoscaling recommendation (optionally applied), and the capacity simulator."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

PROG = "clipwatch loadtest"


def _command_line(args) -> str:
    """The command as it could be pasted again: every option whose value is not the default."""
    parts = ["clipwatch", "loadtest", args.loadtest_command]
    for action in args.parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = getattr(args, action.dest, None)
        if value == action.default or value is None or value is False:
            continue
        flag = action.option_strings[-1]
        if value is True:
            parts.append(flag)
        else:
            for v in value if isinstance(value, list) else [value]:
                parts += [flag, str(v)]
    return shlex.join(parts)


def _fail(message: str, code: int = 2) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def read_uris(path: Path) -> list[str]:
    """One segment URI a line (s3://bucket/key, an absolute path or file://…); # comments."""
    from loadtest.profiles import ProfileError

    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read the URI list ({exc.strerror})") from None
    uris = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not (line.startswith(("s3://", "file://", "/")) and len(line) > 5):
            raise ProfileError(f"{path}:{n}: {line!r} is not s3://bucket/key, file://… or an absolute path")
        uris.append(line)
    if not uris:
        raise ProfileError(f"{path}: no segment URIs in the file")
    return uris


def _slo(args):
    from pydantic import ValidationError

    from loadtest.slo import Slo

    try:
        return Slo(percentile=args.slo_percentile, latency_ms=args.slo_ms, max_error_rate=args.max_error_rate)
    except ValidationError as exc:
        raise ValueError("SLO: " + "; ".join(f"{e['loc'][0]} {e['msg']}" for e in exc.errors())) from None


def _settings(args):
    from pydantic import ValidationError

    from loadtest.recommend import PolicySettings

    try:
        s = PolicySettings(endpoint_name=args.endpoint_name, variant=args.variant,
                           instance_type=args.instance_type, min_instances=args.min_instances,
                           max_instances=args.max_instances, scale_in_cooldown_s=args.scale_in_cooldown,
                           scale_out_cooldown_s=args.scale_out_cooldown, safety_factor=args.safety_factor)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{e['loc'][0]} {e['msg']}" for e in exc.errors())) from None
    if s.max_instances < s.min_instances:
        raise ValueError(f"--max-instances ({s.max_instances}) is below --min-instances ({s.min_instances})")
    return s


def _recommend_and_apply(result, args, console):
    """The SLO search over the steps, the recommendation, and --apply. (rec, applied, code)."""
    from loadtest.recommend import apply, recommend
    from loadtest.slo import best_rate

    rec = recommend(best_rate(result.steps, _slo(args), result.instances), _settings(args))
    applied = None
    code = 0
    if rec.target_value is None:
        console.print(f"[red]{rec.summary}")
        return rec, None, 3
    console.print(f"[green]{rec.summary}")
    if args.apply:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            applied = apply(rec)
            console.print(f"applied: {applied['resource_id']} target {applied['target_value']:g} "
                          f"({applied['min_capacity']}–{applied['max_capacity']} instances)")
        except (BotoCoreError, ClientError, RuntimeError) as exc:
            console.print(f"[red]--apply failed: {exc}")
            code = 4
    return rec, applied, code


def _run(args) -> int:
    from rich.console import Console

    from loadtest import report, runner
    from loadtest.profiles import ProfileError, parse_rates, ramp_profile, step_profile
    from loadtest.targets import HttpTarget, SageMakerTarget

    console = Console(stderr=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury the progress
    try:
        if args.max_in_flight < 1 or args.timeout <= 0 or args.instances < 1:
            raise ProfileError("--max-in-flight and --instances must be ≥ 1 and --timeout positive")
        if args.profile == "step":
            stages = step_profile(parse_rates(args.rates), args.step_seconds)
            profile = f"step {args.rates} /min × {args.step_seconds:g} s"
        else:
            stages = ramp_profile(args.start_rate, args.end_rate, args.duration, args.step_seconds)
            profile = f"ramp {args.start_rate:g}→{args.end_rate:g} /min over {args.duration:g} s"
        uris = list(args.uri or [])
        if args.uris_file:
            uris += read_uris(args.uris_file)
        if not uris:
            raise ProfileError("give segment URIs to send: --uri (repeatable) or --uris-file")
        slo = _slo(args)
        _settings(args)  # refuse bad recommendation settings before the run, not after it
        if args.refine and not args.search:
            raise ProfileError("--refine needs --search")
    except (ProfileError, ValueError) as exc:
        return _fail(str(exc))

    if args.url:
        target = HttpTarget(args.url, args.timeout, args.max_in_flight)
    else:
        target = SageMakerTarget(args.sagemaker_endpoint, args.timeout, args.max_in_flight,
                                 endpoint_url=args.endpoint_url, region=args.region)
    spec = runner.RunSpec(profile_name=profile, stages=stages, uris=uris, instances=args.instances,
                          max_in_flight=args.max_in_flight, timeout_s=args.timeout,
                          poisson=args.arrivals == "poisson", seed=args.seed,
                          search=slo if args.search else None, refine=args.refine,
                          command=_command_line(args))
    console.print(f"load test of {target.description}: {len(stages)} step(s), "
                  f"{sum(s.expected_requests for s in stages):.0f} requests planned, "
                  f"{len(uris)} segment URI(s), SLO {slo.describe()}")
    try:
        result, runs = runner.run(target, spec, console)
    finally:
        target.close()
    rec, applied, code = None, None, 0
    if result.unreachable:
        console.print(f"[red]{result.unreachable}")
        code = 2
    elif result.steps:
        rec, applied, code = _recommend_and_apply(result, args, console)
    files = report.write_loadtest_report(args.out, result, runs, rec, applied)
    if result.interrupted:
        console.print("[yellow]interrupted: the report holds the steps reached")
    _print_steps(console, result)
    console.print(f"report: {files['html']}  (JSON, CSV and PNG beside it)")
    return code


def _print_steps(console, result) -> None:
    from rich.table import Table

    if not result.steps:
        return
    t = Table(title="steps (latency from the scheduled send)")
    for col in ("offered/min", "sent", "ok", "errors", "achieved/min", "p50 ms", "p90 ms", "p99 ms"):
        t.add_column(col, justify="right")
    for s in result.steps:
        t.add_row(f"{s.offered_per_min:g}", str(s.sent), str(s.ok), f"{s.error_rate:.1%}",
                  f"{s.achieved_per_min:g}", *(f"{v:g}" if v is not None else "–" for v in (s.p50_ms, s.p90_ms, s.p99_ms)))
    console.print(t)


def _recommend(args) -> int:
    from pydantic import ValidationError
    from rich.console import Console

    from loadtest import report
    from loadtest.stats import LoadTestResult

    console = Console(stderr=True)
    try:
        result = LoadTestResult.model_validate_json(args.result.read_text())
    except OSError as exc:
        return _fail(f"{args.result}: {exc.strerror}")
    except ValidationError as exc:
        return _fail(f"{args.result}: not a load-test result.json ({exc.error_count()} problem(s), "
                     f"first: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']})")
    try:
        rec, applied, code = _recommend_and_apply(result, args, console)
    except ValueError as exc:
        return _fail(str(exc))
    out = args.out or args.result.parent
    out.mkdir(parents=True, exist_ok=True)
    doc = json.loads(rec.model_dump_json())
    if applied:
        doc["applied"] = applied
    (out / "recommendation.json").write_text(json.dumps(doc, indent=2))
    if rec.cloudformation_parameters:
        (out / "cloudformation-parameters.json").write_text(json.dumps(rec.cloudformation_parameters, indent=2))
        console.print(f"CloudFormation parameters: {out / 'cloudformation-parameters.json'}")
    report.plot_capacity(result, rec, out / "capacity.png")
    return code


def parse_policy(text: str):
    """``name=after,target=300,min=1,max=3,out-cooldown=600,in-cooldown=600,startup=120``."""
    from pydantic import ValidationError

    from loadtest.simulator import Policy

    keys = {"name": "name", "target": "target", "min": "min_instances", "max": "max_instances",
            "out-cooldown": "scale_out_cooldown_s", "in-cooldown": "scale_in_cooldown_s",
            "startup": "startup_s"}
    fields = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in keys:
            raise ValueError(f"--policy {text!r}: {item!r} is not one of {', '.join(k + '=…' for k in keys)}")
        fields[keys[key]] = value
    fields.setdefault("name", f"policy {text}")
    if "target" in fields and "max_instances" not in fields:
        fields["max_instances"] = 3
    try:
        return Policy(**fields)
    except ValidationError as exc:
        raise ValueError(f"--policy {text!r}: " + "; ".join(f"{e['loc'][0]} {e['msg']}" for e in exc.errors())) from None


def _simulate(args) -> int:
    from pydantic import ValidationError
    from rich.console import Console

    from loadtest import report
    from loadtest.simulator import CapacityCurve, Policy, ramp, simulate
    from loadtest.stats import LoadTestResult

    console = Console(stderr=True)
    try:
        if args.curve == "seed":
            curve = CapacityCurve.seed()
        else:
            path = Path(args.curve)
            curve = CapacityCurve.from_result(LoadTestResult.model_validate_json(path.read_text()))
        if args.ramp:
            parts = args.ramp.split(":")
            if len(parts) not in (3, 4):
                raise ValueError(f"--ramp {args.ramp!r}: expected START:END:MINUTES[:HOLD]")
            start, end, minutes = float(parts[0]), float(parts[1]), int(parts[2])
            hold = int(parts[3]) if len(parts) == 4 else 0
        else:  # the seed's ramp, scaled to this curve's capacity (seed: 100→1,700/min, 660/min)
            scale = curve.capacity_per_min / CapacityCurve.seed().capacity_per_min
            start, end, minutes, hold = 100 * scale, 1700 * scale, 15, 5
        load = ramp(start, end, minutes, hold)
        target = args.target
        if target is None and args.recommendation:
            target = json.loads(args.recommendation.read_text()).get("target_value")
            if target is None:
                raise ValueError(f"{args.recommendation}: holds no target value (no load met the SLO)")
        if target is None:
            target = 300 if args.curve == "seed" else max(1, int(curve.capacity_per_min * 0.5))
        policies = [parse_policy(p) for p in args.policy] if args.policy else [
            Policy(name="before: 1 instance"),
            Policy(name=f"after: target {target:g}, 1–3 instances", target=target, max_instances=3,
                   startup_s=args.startup)]
        sims = [simulate(curve, load, p, timeout_s=args.timeout) for p in policies]
    except OSError as exc:
        return _fail(f"{exc.filename}: {exc.strerror}")
    except ValidationError as exc:
        return _fail(f"{args.curve}: not a load-test result.json ({exc.errors()[0]['loc']} {exc.errors()[0]['msg']})")
    except ValueError as exc:
        return _fail(str(exc))
    title = (f"target tracking, ramp {start:g}→{end:g}/min over {minutes} min"
             + (f" + {hold} min hold" if hold else ""))
    files = report.write_simulation_report(args.out, sims, title, curve.source, stem=args.stem)
    for sim in sims:
        s = sim.summary
        console.print(f"{sim.policy.name}: peak {s['peak_instances']} instance(s), worst p90 "
                      f"{s['worst_p90_ms']:g} ms, {s['minutes_over_1s']} min over 1 s, "
                      f"errors {s['error_rate']:.1%}")
    console.print(f"report: {files['html']}  (PNG and JSON beside it)")
    return 0


def _add_policy_args(p) -> None:
    g = p.add_argument_group("recommendation")
    g.add_argument("--safety-factor", type=float, default=0.5, help="target = max rate × this (0.5, the seed's)")
    g.add_argument("--endpoint-name", default="clipwatch", help="SageMaker endpoint the policy is for")
    g.add_argument("--variant", default="AllTraffic")
    g.add_argument("--instance-type", default="ml.g4dn.2xlarge")
    g.add_argument("--min-instances", type=int, default=1)
    g.add_argument("--max-instances", type=int, default=3)
    g.add_argument("--scale-in-cooldown", type=int, default=600, help="seconds (600)")
    g.add_argument("--scale-out-cooldown", type=int, default=600, help="seconds (600)")
    g.add_argument("--apply", action="store_true",
                   help="register the scalable target and policy through boto3 application-autoscaling "
                        "(honours AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING)")


def _add_slo_args(p) -> None:
    g = p.add_argument_group("SLO")
    g.add_argument("--slo-ms", type=float, required=True, help="latency objective in ms")
    g.add_argument("--slo-percentile", choices=("p50", "p90", "p99"), default="p90")
    g.add_argument("--max-error-rate", type=float, default=0.05, help="errors must stay below (0.05)")


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    lt = sub.add_parser(
        "loadtest", help="load tests, autoscaling recommendation and the capacity simulator",
        formatter_class=fmt,
        description="Open-loop load tests against the endpoint (latency from the scheduled send "
                    "time), the highest load meeting an SLO, the SageMaker target-tracking policy "
                    "it implies, and a minute-by-minute simulation of that policy.",
        epilog="example:\n  clipwatch loadtest run --url http://127.0.0.1:8080 --uris-file segments.txt "
               "--rates 30,60,90,120 --step-seconds 30 --slo-ms 2000 --search --out loadtest-out\n"
               "  clipwatch loadtest simulate --curve seed --out sim-out")
    lsub = lt.add_subparsers(dest="loadtest_command", required=True)

    run = lsub.add_parser(
        "run", help="run a load test and recommend a policy", formatter_class=fmt,
        description="Send requests at a fixed arrival rate (step or ramp profile) and measure "
                    "per-step p50/p90/p99 latency from each request's scheduled time, error rate "
                    "and achieved throughput; then recommend (and with --apply register) the "
                    "target-tracking policy. Writes result.json, steps.csv, samples.csv, "
                    "recommendation.json, cloudformation-parameters.json, PNG plots and report.html.",
        epilog="example:\n  clipwatch loadtest run --url http://127.0.0.1:8080 --uri /data/hls/seg_00001.ts "
               "--rates 30,60,90 --step-seconds 30 --slo-ms 2000 --out loadtest-out\n"
               "  clipwatch loadtest run --sagemaker-endpoint clipwatch --uris-file segments.txt "
               "--profile ramp --start-rate 60 --end-rate 900 --duration 600 --slo-ms 500 --apply")
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="our HTTP endpoint (POST {url}/invocations)")
    where.add_argument("--sagemaker-endpoint", metavar="NAME", help="a SageMaker endpoint (boto3 sagemaker-runtime)")
    run.add_argument("--endpoint-url", help="with --sagemaker-endpoint: a non-AWS runtime URL (e.g. clipwatch serve)")
    run.add_argument("--region")
    run.add_argument("--uri", action="append", help="segment URI to send (repeatable; round-robin)")
    run.add_argument("--uris-file", type=Path, help="file with one segment URI a line")
    run.add_argument("--profile", choices=("step", "ramp"), default="step")
    run.add_argument("--rates", default="30,60,90", help="step: comma-separated rates per minute")
    run.add_argument("--step-seconds", type=float, default=30.0, help="length of each step (30)")
    run.add_argument("--start-rate", type=float, default=10.0, help="ramp: first rate per minute")
    run.add_argument("--end-rate", type=float, default=120.0, help="ramp: last rate per minute")
    run.add_argument("--duration", type=float, default=300.0, help="ramp: seconds (300)")
    run.add_argument("--arrivals", choices=("uniform", "poisson"), default="uniform")
    run.add_argument("--seed", type=int, default=0, help="random seed for Poisson arrivals")
    run.add_argument("--max-in-flight", type=int, default=64, help="sender threads / connections (64)")
    run.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in s (30)")
    run.add_argument("--instances", type=int, default=1, help="instances behind the target (rates are per instance / this)")
    run.add_argument("--search", action="store_true",
                     help="stop at the first step breaking the SLO (each step starts from an empty queue)")
    run.add_argument("--refine", type=int, default=0, help="with --search: bisection steps between pass and fail")
    run.add_argument("--out", type=Path, default=Path("loadtest-output"))
    _add_slo_args(run)
    _add_policy_args(run)
    run.set_defaults(run=_run, parser=run)

    rec = lsub.add_parser(
        "recommend", help="recommend (and --apply) a policy from a saved result", formatter_class=fmt,
        description="Re-run the SLO search and recommendation on a saved result.json (e.g. with "
                    "another SLO), write recommendation.json and cloudformation-parameters.json "
                    "(the stack's parameters: aws cloudformation create-stack --parameters file://…).",
        epilog="example:\n  clipwatch loadtest recommend --result loadtest-out/result.json --slo-ms 1500 "
               "--instance-type ml.g5.xlarge --apply")
    rec.add_argument("--result", type=Path, required=True)
    rec.add_argument("--out", type=Path, help="folder for the outputs (default: the result's)")
    _add_slo_args(rec)
    _add_policy_args(rec)
    rec.set_defaults(run=_recommend)

    sim = lsub.add_parser(
        "simulate", help="simulate target tracking minute by minute", formatter_class=fmt,
        description="Predict instances, p90 latency and errors per minute for a load profile and "
                    "autoscaling policies, from one instance's measured capacity curve (a "
                    "result.json) or the seed's ml.g4dn.2xlarge figures. Writes PNG, HTML, JSON.",
        epilog="example:\n  clipwatch loadtest simulate --curve seed --ramp 100:1700:15:5 --out sim-out\n"
               "  clipwatch loadtest simulate --curve loadtest-out/result.json "
               "--recommendation loadtest-out/recommendation.json --out loadtest-out\n"
               "  clipwatch loadtest simulate --curve seed --policy name=fixed,min=1 "
               "--policy name=t300,target=300,max=3,startup=300 --out sim-out")
    sim.add_argument("--curve", default="seed", help="'seed' or a load test's result.json")
    sim.add_argument("--ramp", help="START:END:MINUTES[:HOLD] per-minute load (default: the seed's "
                                    "100→1700 over 15 min + 5, scaled to the curve's capacity)")
    sim.add_argument("--policy", action="append",
                     help="name=…,target=…,min=…,max=…,out-cooldown=…,in-cooldown=…,startup=… (repeatable; "
                          "default: one fixed instance vs target tracking 1–3)")
    sim.add_argument("--target", type=float, help="target value of the default autoscaling policy")
    sim.add_argument("--recommendation", type=Path, help="recommendation.json to take the target value from")
    sim.add_argument("--startup", type=int, default=120, help="instance start-up seconds, default policy (120)")
    sim.add_argument("--timeout", type=float, default=8.0, help="a request waiting longer fails (8 s)")
    sim.add_argument("--out", type=Path, default=Path("simulation-output"))
    sim.add_argument("--stem", default="simulation", help="file name stem of the outputs")
    sim.set_defaults(run=_simulate)
