"""What every benchmark returns and prints: side-by-side comparisons, judged by their ratio.

A benchmark module's `measure(args)` returns `Comparison`s; run on its own it prints them, and
`python -m bench` (bench/__main__.py) collects them from `--json` files into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class Comparison:
    """Two sides measured in the same run; `ratio` is b / a and is what the target judges, or, where
    the sides were measured in pairs, the median of the pairs' b / a (`pairs`)."""

    bench: str
    title: str
    workload: str
    side_a: str
    a: float
    side_b: str
    b: float
    unit: str                       # "images/s", "s/image" or "ms"
    target: float | None = None     # None: shown for information, no target
    lower_is_better: bool = False   # target is a ceiling on the ratio instead of a floor
    checks: dict[str, bool] = field(default_factory=dict)  # further conditions the target needs
    device: str = "cpu"
    flops_per_image: float | None = None  # model paths: FLOPs one image costs on this path
    dtype: str = "float32"          # model paths: the precision their matmuls run in
    notes: list[str] = field(default_factory=list)
    others_cores: float | None = None  # set by python -m bench: cores other jobs kept busy meanwhile
    # b / a of each pair measured together (training's epochs, the sides taking turns step by
    # step; online drift's fresh pairs of servers): a slow spell or a slow process hits one pair,
    # so the median of the pairs' ratios is steadier than the ratio of the sides' best figures
    pairs: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.pairs) if self.pairs else self.b / self.a

    @property
    def pairs_note(self) -> str | None:
        if not self.pairs:
            return None
        return (f"ratio: the median of {len(self.pairs)} paired measurements' ratios"
                f" ({min(self.pairs):.3f}-{max(self.pairs):.3f}x); the sides' figures are their best,"
                f" whose ratio is {self.b / self.a:.3f}x")

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "no target"
        return f"{'<=' if self.lower_is_better else '>='} {self.target}x"

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        within = self.ratio <= self.target if self.lower_is_better else self.ratio >= self.target
        return within and all(self.checks.values())

    def images_per_second(self, value: float) -> float | None:
        """A side's throughput in images/s, where its unit allows."""
        return {"images/s": value, "s/image": 1 / value}.get(self.unit) if value else None


def machine() -> str:
    info = machine_info()
    return f"{info['cpu']}, {info['cores']} cores, {info['gpu']}, torch {info['torch']}"


def machine_info() -> dict[str, object]:
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
        # the vector instructions torch's CPU kernels use (AVX2, AVX512): hosts that report the
        # same CPU name differ in them, and so do the model paths' shares of the matmul figure
        cpu = f"{cpu} ({torch.backends.cpu.get_cpu_capability()})"
    except ImportError:
        gpu, torch_version = "no GPU", "not installed"
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "gpu": gpu, "torch": torch_version}


def synchronise(device: torch.device) -> None:
    """Waits for the GPU's queued work, so that a timer stopped after it measures that work."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def count_flops(work: Callable[[], object]) -> int:
    """FLOPs torch's flop counter sees in `work` (matmuls and convolutions; elementwise ops are free)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops()


def parser(doc: str | None, quick_help: str) -> argparse.ArgumentParser:
    """A benchmark's argument parser with the flags every one of them takes."""
    result = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--quick", action="store_true", help=f"a small workload: {quick_help}")
    result.add_argument("--json", type=Path, default=None,
                        help="also write the comparisons to this file (for python -m bench)")
    return result


def print_comparison(c: Comparison) -> None:
    print(f"## {c.title}\nmachine: {machine()}\ndevice: {c.device}\nworkload: {c.workload}")
    for note in c.notes + ([c.pairs_note] if c.pairs else []):
        print(note)
    print(f"{c.side_a}: {c.a:,.4g} {c.unit}")
    print(f"{c.side_b}: {c.b:,.4g} {c.unit}")
    checks = "".join(f"; {name}: {'yes' if ok else 'NO'}" for name, ok in c.checks.items())
    verdict = "" if c.met is None else f": {'met' if c.met else 'NOT met'}"
    print(f"ratio: {c.ratio:.2f}x (target {c.target_text}{verdict}{checks})\n")


def finish(args: argparse.Namespace, comparisons: list[Comparison]) -> None:
    for c in comparisons:
        print_comparison(c)
    if args.json:
        save(args.json, comparisons)


def save(path: Path, comparisons: list[Comparison]) -> None:
    path.write_text(json.dumps([asdict(c) for c in comparisons], indent=1))


def load(path: Path) -> list[Comparison]:
    return [Comparison(**item) for item in json.loads(path.read_text())]
