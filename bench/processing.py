"""Processing serve mode: images per second with one worker versus all workers, side by side.

Target (issue #22; issue 3 asked 1.7x): all workers on 2 cores at least 1.95x one worker. The
ratio is of the whole job, as its report times it, measured in rounds (one worker, then all) and
judged by the median of the rounds' ratios: the best of each side alone paired a lucky one-worker
run with an ordinary all-workers one (1.83x by best figures where the rounds gave 1.98-2.08x,
2026-12-05). The second row is the machine's own scaling on the same work: the same files decoded
by independent processes, each with its own share and nothing to coordinate.
The workers decode straight into the dataset's shards; until 2026-12-04 one process copied a
scratch pool into them after decoding (0.24 s of a 2-worker run of 5.1 s on 3,000 images), the part
no worker shared: 1.92-1.97x then.
Run: .venv/bin/python -m bench.processing [--images 3000] [--rounds 5] [--quick]
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import Comparison, finish, parser
from shared.data.parallel import decode_images

ROOT = Path(__file__).resolve().parent.parent
SIZE = 224  # the job's --image-size, and what the independent processes decode to


def make_photos(folder: Path, count: int) -> None:
    """Photo-like JPEGs (smooth gradients plus texture), 400x300, in 10 class folders."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:300, 0:400].astype(np.float32)
    for i in range(count):
        a, b, c = rng.uniform(0.005, 0.05, 3)
        base = np.stack([np.sin(x * a + i), np.cos(y * b), np.sin((x + y) * c)], axis=-1)
        pixels = (base * 100 + 128 + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
        path = folder / f"c{i % 10}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)


def run_serve(base: Path, workers: int) -> float:
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "processing", "serve", "--image-size", str(SIZE),
                    "--workers", str(workers)], env=env, check=True, cwd=ROOT,
                   stderr=subprocess.DEVNULL)
    report = json.loads((base / "processing/output/report/report.json").read_text())
    return report["images_used"] / report["seconds"]


def decode_share(paths: list[Path]) -> None:
    for _ in decode_images(paths, SIZE, "crop"):
        pass


def independent_decode(paths: list[Path], processes: int) -> float:
    """Images/s decoding `paths` in `processes` forked processes, each its own share, serially."""
    fork = multiprocessing.get_context("fork")  # as the job's own workers start
    children = [fork.Process(target=decode_share, args=(paths[k::processes],))
                for k in range(processes)]
    started = time.perf_counter()
    for child in children:
        child.start()
    for child in children:
        child.join()
    if any(child.exitcode != 0 for child in children):
        raise RuntimeError("a decoding process failed")
    return len(paths) / (time.perf_counter() - started)


def measure(images: int, rounds: int) -> list[Comparison]:
    cores = len(os.sched_getaffinity(0))
    job: dict[int, list[float]] = {1: [], cores: []}
    alone: dict[int, list[float]] = {1: [], cores: []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        make_photos(base / "processing/input/data", images)
        paths = sorted((base / "processing/input/data").rglob("*.jpg"))
        run_serve(base, cores)  # warm the page cache so both sides read from memory
        for _ in range(rounds):  # each round runs both sides back to back (shared machine)
            for workers in (1, cores):
                job[workers].append(run_serve(base, workers))
                alone[workers].append(independent_decode(paths, workers))
    rounds_text = f"{rounds} rounds" if rounds > 1 else "one round"
    workload = (f"{images} JPEGs 400x300 -> {SIZE}x{SIZE} crop, shards of 6 MB; {rounds_text}, one"
                " worker then all")
    pairs = {name: [b / a for a, b in zip(runs[1], runs[cores], strict=True)]
             for name, runs in (("job", job), ("alone", alone))}
    return [Comparison("processing", "processing serve: one worker vs all workers", workload,
                       "1 worker", max(job[1]), f"{cores} workers", max(job[cores]), "images/s",
                       target=1.95, pairs=pairs["job"]),
            Comparison("processing", "decoding alone: one process vs independent processes",
                       f"{workload}; the job's decode and crop, each process its own share of the"
                       " files, no shards, no coordination: the machine's own scaling",
                       "1 process", max(alone[1]), f"{cores} processes", max(alone[cores]),
                       "images/s", pairs=pairs["alone"])]


def main() -> None:
    args_parser = parser(__doc__, "300 images, one round")
    args_parser.add_argument("--images", type=int, default=None, help="default 3000")
    args_parser.add_argument("--rounds", type=int, default=None, help="default 5")
    args = args_parser.parse_args()
    finish(args, measure(args.images or (300 if args.quick else 3000),
                         args.rounds or (1 if args.quick else 5)))


if __name__ == "__main__":
    main()
