"""`make demo`: the suite's main job on the embedded digits sample.

What runs today is every component that exists, through its real entrypoint and the same
`/opt/ml` layout SageMaker uses; each step's outputs stay in the demo folder for inspection.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from shared.sample_data import write_digits


def run_step(name: str, module: str, args: list[str], base: Path) -> float:
    """Run one component as a processing job; exit with its failure reason if it fails."""
    started = time.monotonic()
    print(f"==> {name}: python -m {module} {' '.join(args)}", flush=True)
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    result = subprocess.run([sys.executable, "-m", module, *args], env=env)
    if result.returncode != 0:
        reason_file = base / "output" / "message"
        reason = reason_file.read_text() if reason_file.is_file() else "see the log above"
        sys.exit(f"step {name} failed: {reason}")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    base = out / "processing-train" / "opt_ml"
    count = write_digits(base / "processing" / "input" / "data", size=32)
    print(f"sample data: {count} digit images written")
    seconds = run_step("processing train", "processing",
                       ["train", "--image-size", str(args.image_size), "--no-hflip"], base)
    report = json.loads((base / "processing" / "output" / "report" / "report.json").read_text())
    print(f"\nprocessing train finished in {seconds:.1f} s")
    print(f"{'split':<12}{'images':>8}")
    for split, counts in report["class_counts"].items():
        print(f"{split:<12}{sum(counts.values()):>8}")
    print(f"skipped: {len(report['skipped'])}, duplicates dropped: {len(report['duplicates'])}")
    print(f"\noutputs: {base / 'processing' / 'output'}")


if __name__ == "__main__":
    main()
