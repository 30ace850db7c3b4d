"""How cost grows with the data: the pipeline steps at 1x, 10x and 30x a base number of images.

bench/scaling.yaml (processing train and serve, monitoring train and serve, Batch Transform, and
explanations of a fixed number of images) runs through the local pipeline runner on generated
40x40 PNGs in four classes, the larger sets holding the smaller. Each step's time comes from the
runner, which runs them one at a time here; its peak memory is sampled from /proc every 0.2 s over
the runner's whole process tree as proportional set size (PSS: shared pages split between the
processes sharing them), total and anonymous (heap and the like, not file pages such as the
memory-mapped datasets).

Targets (issue 22): time grows by at most 1.2x the data factor (10x the images <= 12x the time;
30x <= 36x, and 30x <= 3.6x the 10x time), explanations of a fixed count stay flat (<= 2x);
peak anonymous memory grows by at most 4 kB per added image (bookkeeping, not pixels).
Run: .venv/bin/python -m bench.scaling [--base 2000] [--quick]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import Comparison, finish, parser
from shared.models import ImageClassifier, save_artifact

ROOT = Path(__file__).resolve().parent.parent
FACTORS = (1, 10, 30)
CLASSES = 4
SIDE = 40
FIXED_COUNT = {"explainability"}  # steps whose work does not grow with the data
# Memory may grow with per-image bookkeeping (names, labels, digests, manifest records), not with
# pixels, which stay in memory-mapped files: anonymous memory per added image, in kB.
BOOKKEEPING_KB = 4.0
STEP_LINE = re.compile(r"^\[\d+/\d+\] (\w+): (running|completed|failed|skipped)")


def make_images(folder: Path, count: int) -> None:
    """`count` textured 40x40 PNGs, class by class (stripes at a class's angle, plus noise)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    for i in range(count):
        label = i % CLASSES
        angle = label * np.pi / CLASSES + rng.normal(0, 0.1)
        wave = np.sin((x * np.cos(angle) + y * np.sin(angle)) * rng.uniform(0.4, 0.8))
        pixels = (wave[..., None] * 80 + 128 + rng.normal(0, 20, (SIDE, SIDE, 3))).clip(0, 255)
        path = folder / f"c{label}" / f"{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(path)


def subset(source: Path, target: Path, count: int) -> None:
    """The first `count` images of `source` as hard links (no copies, same files)."""
    for path in sorted(source.rglob("*.png"), key=lambda p: p.name)[:count]:  # every class
        link = target / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, link)


def tree_memory_mb(root: int) -> tuple[float, float]:
    """(PSS, anonymous PSS) in MB of process `root` and all its descendants."""
    total = anon = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                elif line.startswith("Pss_Anon:"):
                    anon += int(line.split()[1])
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):  # the process ended meanwhile
            continue
    return total / 1024, anon / 1024


def run_pipeline(data: Path, model: Path, run_dir: Path) -> dict[str, dict[str, float]]:
    """{step: {seconds, pss_mb, anon_mb}} of one run of bench/scaling.yaml."""
    command = [sys.executable, "-m", "pipelines", "run", str(ROOT / "bench/scaling.yaml"),
               "--param", f"input_data={data}", "--param", f"model={model}", "--run-dir",
               str(run_dir), "--max-parallel", "1"]  # one step at a time: memory is per step
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    peaks: dict[str, list[float]] = {}
    running: dict[str, str | None] = {"step": None}  # from the runner's own lines
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            step = running["step"]
            if step:
                total, anon = tree_memory_mb(proc.pid)
                peak = peaks.setdefault(step, [0.0, 0.0])
                peak[0], peak[1] = max(peak[0], total), max(peak[1], anon)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for line in proc.stdout:
        print("   ", line.rstrip(), flush=True)
        if match := STEP_LINE.match(line):  # memory counts from a step's start to its end
            running["step"] = match.group(1) if match.group(2) == "running" else None
    proc.wait()
    done.set()
    sampler.join()
    summary = json.loads((run_dir / "summary.json").read_text())
    if not summary["ok"]:
        raise RuntimeError(f"the scaling pipeline failed; see {run_dir}")
    return {s["name"]: {"seconds": s["seconds"], "pss_mb": peaks.get(s["name"], [0, 0])[0],
                        "anon_mb": peaks.get(s["name"], [0, 0])[1]} for s in summary["steps"]}


def allowed(step: str, factor: float) -> float:
    """The largest time ratio that counts as linear when the data grows by `factor`."""
    return 2.0 if step in FIXED_COUNT else 1.2 * factor


def kb_per_image(anon_mb: dict[int, float], base: int) -> float:
    low, high = FACTORS[0], FACTORS[-1]
    return max(0.0, anon_mb[high] - anon_mb[low]) * 1024 / (base * (high - low))


def comparisons(base: int, results: dict[int, dict[str, dict[str, float]]]) -> list[Comparison]:
    low, mid, high = FACTORS
    out = []
    for step in results[low]:
        t = {f: results[f][step]["seconds"] for f in FACTORS}
        anon = {f: results[f][step]["anon_mb"] for f in FACTORS}
        checks = {f"{mid}x within {allowed(step, mid / low):.3g}x the {low}x time":
                  t[mid] <= allowed(step, mid / low) * t[low],
                  f"{high}x within {allowed(step, high / mid):.3g}x the {mid}x time":
                  t[high] <= allowed(step, high / mid) * t[mid],
                  f"anonymous memory per added image <= {BOOKKEEPING_KB:g} kB":
                  kb_per_image(anon, base) <= BOOKKEEPING_KB}
        fixed = " (explaining 40 images at every size)" if step in FIXED_COUNT else ""
        out.append(Comparison(
            "scaling", f"scaling: {step.replace('_', ' ')}, {low}x vs {high}x the images",
            f"bench/scaling.yaml on {base:,} x {low}/{mid}/{high} generated {SIDE}x{SIDE} PNGs"
            f" ({CLASSES} classes) at 32x32{fixed}",
            f"{low}x: {base * low:,} images", t[low], f"{high}x: {base * high:,} images", t[high],
            "s", target=allowed(step, high / low), lower_is_better=True, checks=checks,
            notes=["seconds: " + ", ".join(f"{f}x {t[f]:.1f}" for f in FACTORS),
                   "peak PSS MB (of it anonymous): " + ", ".join(
                       f"{f}x {results[f][step]['pss_mb']:.0f} ({anon[f]:.0f})" for f in FACTORS),
                   f"anonymous memory per added image: {kb_per_image(anon, base):.2f} kB (the"
                   f" pixels of one image at 32x32: {32 * 32 * 3 / 1024:.0f} kB)"]))
    return out


def measure(base: int) -> list[Comparison]:
    with tempfile.TemporaryDirectory(dir=ROOT / "build") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        make_images(work / "all", base * FACTORS[-1])
        print(f"made {base * FACTORS[-1]:,} images in {time.monotonic() - started:.0f} s", flush=True)
        model = work / "model"
        save_artifact(ImageClassifier.create("resnet10t", [f"c{i}" for i in range(CLASSES)], 32), model)
        results = {}
        for factor in FACTORS:
            data = work / f"data-{factor}x"
            subset(work / "all", data, base * factor)
            print(f"== {factor}x: {base * factor:,} images", flush=True)
            results[factor] = run_pipeline(data, model, work / f"run-{factor}x")
    return comparisons(base, results)


def main() -> None:
    args_parser = parser(__doc__, "a base of 100 images (up to 3,000)")
    args_parser.add_argument("--base", type=int, default=None, help="images at 1x (default 2000)")
    args = args_parser.parse_args()
    (ROOT / "build").mkdir(exist_ok=True)
    finish(args, measure(args.base or (100 if args.quick else 2000)))


if __name__ == "__main__":
    main()
