"""`make bench`: every benchmark in bench/, one after another, and BENCHMARKS.md from their figures.

Each benchmark runs in its own child process (`python -m bench.<name> --json ...`): a fresh
interpreter per benchmark, so thread settings, caches and memory from one cannot skew the next,
and a failure is recorded instead of ending the run. Training, serving, attribution and drift run
once more on the GPU when there is one. Then `make demo`, timed per pipeline step.
Run: .venv/bin/python -m bench [--quick] [--out BENCHMARKS.md] [--only NAME ...] [--devices cpu cuda]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from algorithm.train import lightning_precision
from bench import demo as demo_bench
from bench.common import Comparison, load, machine_info
from bench.hardware import matmul_gflops, other_jobs_meter
from bench.report import render

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ("processing", "training", "serving", "drift", "attribution", "scaling", "quality",
           "drift_power", "tuning")
ON_GPU = ("training", "serving", "drift", "attribution")
ALL = (*BENCHES, "demo")


def devices(name: str, allowed: list[str]) -> list[str | None]:
    if name not in ON_GPU:
        return [None] if "cpu" in allowed else []
    return [d for d in ("cpu", "cuda") if d in allowed and (d == "cpu" or torch.cuda.is_available())]


def matmul_references(allowed: list[str]) -> dict[str, float]:
    """GFLOP/s of a large matmul per "device dtype": the yardstick of each model path."""
    found = {"cpu float32": matmul_gflops("cpu")} if "cpu" in allowed else {}
    if "cpu" in allowed and lightning_precision("auto", gpus=False).startswith("bf16"):
        found["cpu bfloat16"] = matmul_gflops("cpu", dtype="bfloat16")  # training's, with AMX
    if "cuda" in allowed and torch.cuda.is_available():
        found |= {f"cuda {dtype}": matmul_gflops("cuda", dtype=dtype)
                  for dtype in ("float32", "bfloat16")}
    return found


def bench_args(name: str, device: str | None, quick: bool) -> list[str]:
    """The flags one benchmark runs with: its own defaults (or --quick) on the given device."""
    return (["--quick"] if quick else []) + (["--device", device] if device else [])


def run_bench(name: str, device: str | None, quick: bool, folder: Path):
    """(comparisons, failure reason or None) of one benchmark run in a child process."""
    path = folder / f"{name}-{device}.json"
    command = [sys.executable, "-m", f"bench.{name}", "--json", str(path), *bench_args(name, device, quick)]
    print(f"\n=== {' '.join(command[1:3])}{' on ' + device if device else ''} ===", flush=True)
    # stderr holds library warnings (Lightning's, mostly); it is shown only when the run fails.
    proc = subprocess.run(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip()[-3000:]
        print(tail, file=sys.stderr)
        return [], tail or f"exit status {proc.returncode}"
    return load(path), None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="shrunken workloads to check the plumbing (not the real figures)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default BENCHMARKS.md; build/BENCHMARKS-quick.md with --quick")
    parser.add_argument("--only", nargs="+", choices=ALL, default=list(ALL),
                        help="run only these (default: all)")
    parser.add_argument("--devices", nargs="+", choices=("cpu", "cuda"), default=["cpu", "cuda"],
                        help="where the model paths run (default: the CPU, and the GPU when there"
                             " is one); benchmarks with no GPU side count as cpu")
    args = parser.parse_args()
    out = args.out or (ROOT / "build/BENCHMARKS-quick.md" if args.quick else ROOT / "BENCHMARKS.md")
    started, start_time = time.monotonic(), datetime.now(UTC)
    whole_run = other_jobs_meter()
    matmul = {name: [gflops] for name, gflops in matmul_references(args.devices).items()}
    comparisons: list[Comparison] = []
    failures: dict[str, str] = {}
    seconds: dict[str, tuple[str, float, float]] = {}  # label: (command, wall time, others' cores)
    with tempfile.TemporaryDirectory() as tmp:
        for name in (n for n in BENCHES if n in args.only):
            for device in devices(name, args.devices):
                label = f"{name} ({device})" if device else name
                t, others = time.monotonic(), other_jobs_meter()
                found, failure = run_bench(name, device, args.quick, Path(tmp))
                command = " ".join(["python -m bench." + name, *bench_args(name, device, args.quick)])
                seconds[label] = (command, time.monotonic() - t, others())
                for c in found:
                    c.others_cores = seconds[label][2]
                comparisons += found
                if failure:
                    failures[label] = failure
    demo = None
    if "demo" in args.only and "cpu" in args.devices:
        print("\n=== make demo ===", flush=True)
        t, others = time.monotonic(), other_jobs_meter()
        demo = demo_bench.measure(args.quick)
        seconds["make demo"] = (demo["command"], time.monotonic() - t, others())
        demo_bench.print_demo(demo)
        if not demo["ok"]:
            failures["make demo"] = "the demo failed; its output is above"
    for name, gflops in matmul_references(args.devices).items():  # the machine may have been
        matmul[name].append(gflops)                                  # busier or idler at the end
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(info=machine_info(), started=start_time.strftime("%Y-%m-%d %H:%M UTC"),
                          seconds=time.monotonic() - started, quick=args.quick, others=whole_run(),
                          comparisons=comparisons, failures=failures, matmul=matmul, demo=demo,
                          bench_seconds=seconds))
    print(f"\nwrote {out}" + (f"; FAILED: {', '.join(failures)}" if failures else ""))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
