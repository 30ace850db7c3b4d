"""What every benchmark prints: the machine it ran on and rows of side-by-side figures."""

from __future__ import annotations

import os
import platform


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        torch_version = torch.__version__
    except ImportError:
        gpu, torch_version = "no GPU", "not installed"
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, {gpu}, torch {torch_version}"


def print_header(title: str, workload: str) -> None:
    print(f"## {title}\nmachine: {machine()}\nworkload: {workload}")


def print_result(side_a: str, a: float, side_b: str, b: float, unit: str, target: float) -> float:
    """Print both sides and ratio b/a, and whether the target ratio is met."""
    ratio = b / a
    print(f"{side_a}: {a:,.1f} {unit}")
    print(f"{side_b}: {b:,.1f} {unit}")
    print(f"ratio: {ratio:.2f}x (target >= {target}x: {'met' if ratio >= target else 'NOT met'})")
    return ratio
