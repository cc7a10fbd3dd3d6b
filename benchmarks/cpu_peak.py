"""What this CPU's cores can do at best: the fp32 matrix-multiply rate that bounds any
network's forward here. A network of G GFLOP per clip cannot take less than G / this rate
seconds on these cores, whatever the runtime: the floor the endpoint's model time is read
against (README "Kinetics-400", Speed).

    .venv/bin/python benchmarks/cpu_peak.py --out benchmarks/results/cpu_peak.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch


def gemm_gflops(n: int, threads: int, repeats: int) -> list[float]:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):  # warm-up: pages touched, kernels chosen
        a @ b
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        rates.append(2 * n ** 3 / (time.perf_counter() - started) / 1e9)
    return rates


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", type=Path, default=Path(".cache/benchmarks/cpu_peak.json"))
    args = p.parse_args(argv)
    threads = os.cpu_count() or 1
    rates = {t: gemm_gflops(args.size, t, args.repeats) for t in sorted({1, threads})}
    result = {"benchmark": "cpu_peak", "fp32_gemm": {"n": args.size, **{
        f"{t}_threads": {"best_gflops": round(max(r), 1), "median_gflops": round(sorted(r)[len(r) // 2], 1)}
        for t, r in rates.items()}}, "torch": torch.__version__, "cpu_count": threads,
        "cpu": cpu_name(), "machine": platform.machine(), "loadavg": list(os.getloadavg())}
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
