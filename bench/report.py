"""BENCHMARKS.md from one run's figures: targets at a glance, each benchmark, utilisation, demo."""

from __future__ import annotations

from bench.common import Comparison
from bench.demo import run_wall_time

NOTE = (
    "Ratios are what the targets judge: both sides of a comparison run in the same process tree,"
    " on the same machine, minutes apart and mostly interleaved, so a slower or busier machine moves"
    " both. Absolute times are shown for scale only; they vary with the machine and with what else"
    " runs on it. This machine is shared with other jobs (image builds, test runs): the cores they kept"
    " busy are measured alongside (CPU time of the whole machine minus this run's own, from /proc/stat)"
    " and shown below, for the run and for each benchmark.")


def _value(value: float) -> str:
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def _share(fraction: float) -> str:
    """A share of the peak; small ones (a GPU on a small model) keep two significant digits."""
    return f"{fraction:.0%}" if fraction >= 0.1 else f"{100 * fraction:.2g}%"


def _verdict(c: Comparison) -> str:
    return "no target" if c.met is None else ("met" if c.met else "**not met**")


def glance(comparisons: list[Comparison], failures: dict[str, str]) -> list[str]:
    lines = ["## Targets at a glance", "",
             "| benchmark | device | side A | side B | ratio B/A | target | result | other jobs' cores |",
             "|---|---|---|---|---:|---|---|---:|"]
    for c in comparisons:
        others = "" if c.others_cores is None else f"{c.others_cores:.2f}"
        lines.append(f"| {c.title} | {c.device} | {c.side_a}: {_value(c.a)} {c.unit} |"
                     f" {c.side_b}: {_value(c.b)} {c.unit} | {c.ratio:.2f}x | {c.target_text} |"
                     f" {_verdict(c)} | {others} |")
    for name, reason in failures.items():
        lines.append(f"| {name} | | | | | | **failed**: {reason.splitlines()[-1] if reason else ''} | |")
    lines += ["", "The last column is how many of the machine's cores other jobs kept busy, on average,"
              " while that benchmark ran. Both sides of each comparison are timed alternately and each"
              " keeps its best, which absorbs short bursts; sustained load from other jobs can still"
              " skew a ratio, so read a result next to that figure. Where a comparison was"
              " measured in pairs (training's epochs, the sides taking turns step by step; online"
              " drift's fresh pairs of servers), the ratio is the median of the pairs' ratios, which"
              " a slow spell or a slow process moves less than the ratio of the sides' best figures."]
    return lines + [""]


def details(comparisons: list[Comparison]) -> list[str]:
    lines = ["## Each benchmark", ""]
    for c in comparisons:
        lines += [f"### {c.title} ({c.device})", "", f"Workload: {c.workload}.", "",
                  f"| side | {c.unit} |", "|---|---:|",
                  f"| A: {c.side_a} | {_value(c.a)} |", f"| B: {c.side_b} | {_value(c.b)} |", "",
                  f"Ratio B/A {c.ratio:.3f}x; "
                  + ("no target." if c.met is None else f"target {c.target_text}: {_verdict(c)}.")]
        lines += [f"- {name}: {'yes' if ok else '**no**'}" for name, ok in c.checks.items()]
        lines += [f"- {note}" for note in c.notes + ([c.pairs_note] if c.pairs else [])] + [""]
    return lines


def utilisation(comparisons: list[Comparison], matmul: dict[str, list[float]]) -> list[str]:
    lines = ["## How much of the machine the model paths use", "",
             "Reference: the best of several large matmuls (`torch.mm`, 2048x2048 on the CPU,"
             " 8192x8192 on a GPU; float32, and bfloat16 on a GPU or a CPU that trains in it),"
             " timed at the start and at the end of this run; the higher counts. A path is measured"
             " against the matmul of the precision it computes in (float32 matmuls on a GPU do not"
             " use TF32 here, torch's default).",
             ""]
    for device, figures in matmul.items():
        lines.append(f"- {device}: " + ", ".join(f"{g:,.1f}" for g in figures) + " GFLOP/s")
    lines += ["", "Model FLOPs per image come from `torch.utils.flop_counter.FlopCounterMode` on the"
              " exact model, input size and pass each path runs (forward for serving; forward and"
              " backward for training; forward and input gradients at every integration point for"
              " attribution). It counts convolutions and matmuls, which dominate; elementwise,"
              " normalisation and optimiser arithmetic are not counted, so the fractions are a"
              " slight underestimate. A \"layers alone\" side is the path's own convolutions and linear"
              " layers, each timed by itself on the input it gets in that path (bench/layers.py):"
              " the most the path could reach, whatever it does around them.", "",
              "| path | device | precision | side | model GFLOPs per image | images/s |"
              " achieved GFLOP/s | of matmul peak |", "|---|---|---|---|---:|---:|---:|---:|"]
    shown = set()  # a side two comparisons share (the path against its ceiling) is shown once
    for c in comparisons:
        reference = f"{c.device} {c.dtype}"
        if not c.flops_per_image or reference not in matmul:
            continue
        peak = max(matmul[reference])
        for side, value in ((c.side_a, c.a), (c.side_b, c.b)):
            if (c.bench, reference, side, value) in shown:
                continue
            shown.add((c.bench, reference, side, value))
            rate = c.images_per_second(value)
            achieved = c.flops_per_image * rate / 1e9
            lines.append(f"| {c.bench} | {c.device} | {c.dtype} | {side} |"
                         f" {c.flops_per_image / 1e9:.4g} |"
                         f" {rate:,.1f} | {achieved:,.1f} | {_share(achieved / peak)} |")
    return lines + [""]


def demo_section(demo: dict | None) -> list[str]:
    if demo is None:
        return []
    lines = ["## End to end: `make demo`", "",
             f"`{demo['command']}` {'succeeded' if demo['ok'] else '**failed**'} in"
             f" {demo['total_seconds']:.0f} s of wall time. Time per pipeline step, as the runner"
             " records it; steps of one run that do not depend on each other overlap (start: seconds"
             " after the run's first step started). No ratio here: these absolute times move with"
             " the machine and with the other jobs' share of it, in the last table.", "",
             "| pipeline run | step | state | start | seconds |", "|---|---|---|---:|---:|"]
    for run in demo["runs"]:
        first = min((s["started"] for s in run["steps"] if s.get("started") is not None),
                    default=None)
        for s in run["steps"]:
            start = "" if s.get("started") is None else f"{s['started'] - first:.1f}"
            lines.append(f"| {run['run']} ({run['pipeline']}) | {s['name']} | {s['state']} |"
                         f" {start} | {s['seconds']:.1f} |")
        lines.append(f"| {run['run']} | **the run, first start to last end** | | |"
                     f" **{run_wall_time(run):.1f}** |")
    runs = sum(run_wall_time(run) for run in demo["runs"] if "/" not in run["run"])  # not nested
    lines += [f"| outside the runs | making the data, starting processes, the report | | |"
              f" {demo['total_seconds'] - runs:.1f} |",
              f"| **total** | | | | **{demo['total_seconds']:.1f}** |", ""]
    return lines


def render(*, info: dict, started: str, seconds: float, quick: bool, others: float,
           comparisons: list[Comparison], failures: dict[str, str], matmul: dict[str, list[float]],
           demo: dict | None, bench_seconds: dict[str, tuple[str, float, float]]) -> str:
    lines = ["# Benchmarks", ""]
    if quick:
        lines += ["> **QUICK RUN (`python -m bench --quick`): shrunken workloads to check the plumbing."
                  " These are not the real figures.**", ""]
    lines += [f"Written by `{'python -m bench --quick' if quick else 'make bench'}` on {started};"
              f" the whole run took {seconds / 60:.1f} min. Every figure below was measured in that"
              " run.", "", NOTE, "",
              "| CPU | cores | GPU | torch | cores other jobs kept busy (average over the run) |",
              "|---|---:|---|---|---:|",
              f"| {info['cpu']} | {info['cores']} | {info['gpu']} | {info['torch']} | {others:.2f} |",
              ""]
    if info["gpu"] == "no GPU":
        lines += ["No GPU was available in this run, so there are no GPU rows; on a machine with one,"
                  " `make bench` adds them for training, serving, drift and attribution"
                  " ([BENCHMARKS-GPU.md](BENCHMARKS-GPU.md): a lent H100).", ""]
    lines += glance(comparisons, failures) + utilisation(comparisons, matmul)
    lines += demo_section(demo) + details(comparisons)
    lines += ["## Wall time of each benchmark", "",
              "| benchmark | command | seconds | cores other jobs kept busy meanwhile |",
              "|---|---|---:|---:|"]
    lines += [f"| {name} | `{command}` | {s:.0f} | {others:.2f} |"
              for name, (command, s, others) in bench_seconds.items()]
    lines += ["", "Each benchmark module also runs on its own (`.venv/bin/python bench/<name>.py`),"
              " printing the same comparisons.", ""]
    return "\n".join(lines)
