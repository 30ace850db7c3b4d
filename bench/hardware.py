"""What the machine can do: dense matmul throughput, the yardstick for model FLOP rates.

A large matmul is about the best a CPU or GPU does on real arithmetic, so FLOPs per image x images
per second over it says how much of the machine a model path uses.
Run: .venv/bin/python bench/hardware.py [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

SIZES = {"cpu": 2048, "cuda": 8192}


def matmul_gflops(device: str = "cpu", repeats: int = 10, size: int | None = None,
                  dtype: str = "float32") -> float:
    """Best of `repeats` timed size x size matmuls, after warm-up, in GFLOP/s."""
    n = size or SIZES[device]
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device, getattr(torch, dtype))
    b = torch.randn(n, n, generator=generator).to(device, getattr(torch, dtype))
    best = float("inf")
    for i in range(repeats + 2):  # two warm-up products
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _busy_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (/proc/stat; steal excluded)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, stat.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """This process's CPU time plus that of every child (and their children) it has waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def other_jobs_meter() -> Callable[[], float]:
    """Starts now; the returned function gives the cores other jobs kept busy since, on average.

    The load average would count our own processes too; this subtracts them, so it says how much
    of the machine the benchmarks did not have.
    """
    busy, own, start = _busy_cpu_seconds(), _own_cpu_seconds(), time.monotonic()

    def cores() -> float:
        others = (_busy_cpu_seconds() - busy) - (_own_cpu_seconds() - own)
        return max(0.0, others) / max(time.monotonic() - start, 1e-9)
    return cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args()
    print(f"{SIZES[args.device]}x{SIZES[args.device]} {args.dtype} matmul on {args.device},"
          f" {torch.get_num_threads()} threads:"
          f" {matmul_gflops(args.device, dtype=args.dtype):,.1f} GFLOP/s")


if __name__ == "__main__":
    main()
