"""The README works as written: every shell and Python block is run here (tests/readme_blocks.py)
or marked with the reason it cannot be, and every `clipwatch …` example — in the README and in
each command's --help — parses with the real command line. A README example that breaks turns
`make test` red."""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from clipwatch.localstack import free_port
from readme_blocks import ROOT, Run, commands, readme_blocks

BLOCKS = readme_blocks()
SCENARIOS = sorted({b.scenario for b in BLOCKS if b.scenario})
CODE = [b for b in BLOCKS if b.lang in ("sh", "python")]


def test_every_code_block_is_run_or_says_why_not():
    unmarked = [f"README.md:{b.line}" for b in CODE if b.marker is None]
    assert not unmarked, f"code blocks without a <!-- doctest: … --> marker: {unmarked}"
    for b in CODE:
        if b.skip_reason is not None:
            assert len(b.skip_reason) > 10, f"README.md:{b.line}: say why it is not run"
    assert set(SCENARIOS) == set(RUNNERS), "every doctest scenario has a runner here, and only those"


# --- the scenarios ------------------------------------------------------------------------------

def _ended_playlist(folder: Path, segments: list[Path], target: int = 10) -> Path:
    """An HLS playlist over finished segments, ended (what a VOD or a finished live event is)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-MEDIA-SEQUENCE:0"]
    for s in segments:
        lines += [f"#EXTINF:{target:.1f},", s.name]
    (folder / "live.m3u8").write_text("\n".join(lines + ["#EXT-X-ENDLIST", ""]))
    return folder / "live.m3u8"


def _terminal(tmp_path: Path, demo_model_link: bool = True) -> Run:
    """A folder to type the README's commands in: `clipwatch` and `python` on PATH from this
    environment, boto3 pointed at moto, the committed demo model where the README says
    `models/demo` (and `./model`), and /data/hls as a folder of its own."""
    cwd = tmp_path / "terminal"
    (cwd / "hls").mkdir(parents=True)
    if demo_model_link:
        (cwd / "models").mkdir()
        (cwd / "models" / "demo").symlink_to(ROOT / "models" / "demo")
        (cwd / "model").symlink_to(ROOT / "models" / "demo")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT)}
    return Run(cwd, env, substitutions=[("/data/hls", str(cwd / "hls")),
                                        (".venv/bin/python", sys.executable),
                                        (" benchmarks/", f" {ROOT}/benchmarks/")])


def _play(run: Run, scenario: str) -> None:
    try:
        for block in (b for b in BLOCKS if b.scenario == scenario):
            run.block(block)
    finally:
        run.stop()


def _segments(folder: Path, count: int, seconds: float = 4.0) -> list[Path]:
    from clipwatch.testmedia import render_segment

    folder.mkdir(parents=True, exist_ok=True)
    return [render_segment(folder / f"seg_{i:05d}.ts", seconds=seconds, size=(320, 240), seed=i * 7)
            for i in range(count)]


def scenario_endpoint(tmp_path, aws):
    import boto3

    run = _terminal(tmp_path)
    port, bucket = free_port(), f"readme-{os.urandom(4).hex()}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    segment = _segments(tmp_path / "media", 1)[0]
    boto3.client("s3").upload_file(str(segment), bucket, "live/channel_00042.ts")
    run.substitutions += [("my-bucket", bucket), ("8080", str(port))]
    _play(run, "endpoint")
    prediction = json.loads(run.output_of("curl"))
    assert prediction["label"] and prediction["sequence"] == 42 and prediction["stored"]
    with sqlite3.connect(run.cwd / "preds.db") as db:
        assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 1


def scenario_kinetics(tmp_path, kinetics_dir):
    from clipwatch import footage

    run = _terminal(tmp_path)
    cam = run.cwd / "hls" / "cam1"
    _ended_playlist(cam, [footage.segment("soccer-juggling", cam / "seg_00000.ts", (640, 360))])
    run.substitutions += [("clipwatch serve --model", f"clipwatch serve --port {free_port()} --model")]
    run.timeout_s = 900
    _play(run, "kinetics")
    assert str(kinetics_dir) in run.output_of("model fetch")
    with sqlite3.connect(run.cwd / "clipwatch.db") as db:  # watch's default store
        assert db.execute("SELECT label FROM predictions").fetchall() == [("juggling_soccer_ball",)]


def scenario_watch(tmp_path):
    run = _terminal(tmp_path)
    cam = run.cwd / "hls" / "cam1"
    _ended_playlist(cam, _segments(cam, 2))
    _play(run, "watch")
    with sqlite3.connect(run.cwd / "preds.db") as db:
        assert db.execute("SELECT sequence FROM predictions ORDER BY sequence").fetchall() == [(0,), (1,)]


def scenario_review(tmp_path):
    run = _terminal(tmp_path)
    cam = run.cwd / "hls" / "cam1"
    _ended_playlist(cam, _segments(cam, 2))
    # Flagged predictions to review: the stream followed with every prediction sent to people.
    watched = subprocess.run([sys.executable, "-m", "clipwatch.cli", "watch", str(cam / "live.m3u8"),
                              "--model", "models/demo", "--store", "sqlite:///preds.db",
                              "--spool", str(run.cwd / "hls" / "spool")], cwd=run.cwd,
                             env={**run.env, "CLIPWATCH_REVIEW_MIN_CONFIDENCE": "1.01"}, timeout=600,
                             capture_output=True, text=True)
    assert watched.returncode == 0, watched.stderr[-3000:]
    port = free_port()
    run.substitutions += [("--port 8000", f"--port {port}")]
    try:
        for block in (b for b in BLOCKS if b.scenario == "review"):
            run.block(block)
        # The server the block started serves the queue to the token the block printed.
        token = re.search(r"token \(shown once\):\n(\S+)", run.output_of("review-user add alice")).group(1)
        queue = requests.get(f"http://127.0.0.1:{port}/api/queue", timeout=30,
                             headers={"Authorization": f"Bearer {token}"})
        assert queue.status_code == 200 and len(queue.json()["tasks"]) == 2, queue.text
    finally:
        run.stop()
    assert (run.cwd / "gt" / "output.manifest").is_file()
    assert {"tasks.json", "label_config.xml"} <= {p.name for p in (run.cwd / "ls").iterdir()}
    assert (run.cwd / "data" / "reviewed" / "classes.txt").is_file()


def scenario_training(tmp_path):
    run = _terminal(tmp_path)
    run.substitutions += [("--clips-per-class 100", "--clips-per-class 4"), ("--epochs 30", "--epochs 2"),
                          ("clipwatch serve --model", f"clipwatch serve --port {free_port()} --model")]
    run.timeout_s = 1200
    _play(run, "training")
    card = json.loads((run.cwd / "models" / "mine" / "model.json").read_text())
    assert card["metrics"]["epochs_run"] == 2 and "temperature" in card


def scenario_demo_model(tmp_path):
    run = _terminal(tmp_path, demo_model_link=False)  # `--out models/demo` writes a new one here
    run.substitutions += [("--clips-per-class 250", "--clips-per-class 4"), ("--epochs 40", "--epochs 2")]
    run.timeout_s = 1200
    _play(run, "demo-model")
    assert (run.cwd / "models" / "demo" / "evaluation" / "confusion.png").is_file()
    assert not (ROOT / "models" / "demo").is_symlink()


def scenario_loadtest(tmp_path):
    run = _terminal(tmp_path)
    _segments(run.cwd / "demo-output" / "segments" / "demo", 3, seconds=10)
    run.substitutions += [("--rates 30,60,90,120,150,180,240,300", "--rates 30,60"),
                          ("--step-seconds 30", "--step-seconds 12"), ("8091", str(free_port()))]
    _play(run, "loadtest")
    result = json.loads((run.cwd / "docs" / "loadtest" / "result.json").read_text())
    assert [s["offered_per_min"] for s in result["steps"]][:2] == [30, 60]
    assert (run.cwd / "docs" / "loadtest" / "simulation-measured.png").is_file()


def scenario_package(tmp_path, kinetics_dir):
    run = _terminal(tmp_path)
    _play(run, "package")
    build = run.cwd / "build"
    assert {p.name for p in build.iterdir()} == {"model.tar.gz", "clipwatch-trigger.zip", "image"}
    assert (build / "image" / "Dockerfile").is_file()


def scenario_serve_variants(tmp_path, kinetics_dir):
    run = _terminal(tmp_path)
    port = free_port()
    run.substitutions += [("clipwatch serve --model", f"clipwatch serve --port {port} --model")]
    run.one_server = True  # each line is an alternative on the same port
    run.timeout_s = 900
    _play(run, "serve-variants")
    assert len(run.servers) == 6


def scenario_bench_quick(tmp_path):
    run = _terminal(tmp_path)
    _play(run, "bench-quick")
    result = json.loads((run.cwd / ".cache" / "benchmarks" / "quick.json").read_text())
    assert result["summary"]["throughput_ratio_endpoint_over_baseline"] > 0 and (run.cwd / ".cache" / "benchmarks" / "quick.png").is_file()


RUNNERS = {"bench-quick": scenario_bench_quick, "endpoint": scenario_endpoint, "kinetics": scenario_kinetics, "watch": scenario_watch,
           "review": scenario_review, "training": scenario_training, "demo-model": scenario_demo_model,
           "loadtest": scenario_loadtest, "package": scenario_package, "serve-variants": scenario_serve_variants}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_readme_blocks_run_as_written(scenario, request, tmp_path):
    runner = RUNNERS[scenario]
    fixtures = [name for name in runner.__code__.co_varnames[:runner.__code__.co_argcount] if name != "tmp_path"]
    runner(tmp_path, *(request.getfixturevalue(name) for name in fixtures))


# --- every `clipwatch …` example parses ---------------------------------------------------------

def _clipwatch_invocations(text: str) -> list[str]:
    """`clipwatch …` commands in shell text: pipelines, `&&`, `&` and comments split off."""
    out = []
    for command in commands(text):
        for part in re.split(r"\s(?:&&|\|\||;|\|)\s|\s&(?:\s|$)", command):
            part = re.sub(r"\s#\s.*$", "", part).strip().rstrip("&").strip()
            if re.match(r"^(\S*/)?clipwatch\s", part):
                out.append(part)
    return out


def _problem(line: str) -> str | None:
    """None when ``line`` parses with clipwatch's own command line, else what argparse said."""
    import contextlib
    import io

    from clipwatch.cli import parser

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            parser().parse_args(shlex.split(line)[1:])
    except SystemExit:
        return f"`{line}`: {said.getvalue().strip().splitlines()[-1]}"
    return None


def test_every_clipwatch_command_in_the_readme_parses(capsys):
    lines = [line for b in CODE if b.lang == "sh" for line in _clipwatch_invocations(b.code)]
    assert len(lines) > 30
    # `loadtest run ...`: the rest elided on purpose
    problems = [p for line in lines if (p := _problem(line.replace("...", "--url http://x")))]
    assert not problems, "\n".join(problems)


def test_every_help_example_parses():
    import argparse

    from clipwatch.cli import parser

    subcommands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    lines = []
    for name, sub in subcommands.items():
        assert sub.epilog and "example:" in sub.epilog, f"clipwatch {name} --help has no example"
        lines += _clipwatch_invocations(sub.epilog.split("example:", 1)[1])
    assert len(lines) > 25
    problems = [p for line in lines if (p := _problem(line))]
    assert not problems, "\n".join(problems)
