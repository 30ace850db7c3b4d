"""End to end: `make demo`'s wall time, broken down by pipeline run and step.

Runs `python -m pipelines.demo` as `make demo` does, into a temporary folder, then reads each
pipeline run's `summary.json`, where the runner records every step's state and wall time.
Run: .venv/bin/python bench/demo.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The reduced configuration tests/test_demo.py proves: fewer epochs could miss the accuracy gate.
QUICK_ARGS = ["--epochs", "3", "--explain-images", "8"]


def measure(quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        command = [sys.executable, "-m", "pipelines.demo", "--out", str(out)]
        command += QUICK_ARGS if quick else []
        started = time.monotonic()
        returncode = subprocess.run(command, cwd=ROOT).returncode
        total = time.monotonic() - started
        runs = read_runs(out / "runs")
    shown = ["python", "-m", "pipelines.demo", *command[5:]]  # without the temporary --out
    return {"command": " ".join(shown), "ok": returncode == 0, "total_seconds": total, "runs": runs}


def read_runs(runs_dir: Path) -> list[dict]:
    """Each pipeline run's steps (state, seconds, start and end) from the runner's summary.json;
    a retraining started by a batch run is a run of its own, inside that run's retrain step."""
    runs = []
    for run_file in sorted(runs_dir.rglob("run.json")):
        folder = run_file.parent
        if not (folder / "summary.json").is_file():
            continue  # some job's own run.json, not a pipeline run's
        summary = json.loads((folder / "summary.json").read_text())
        runs.append({"run": str(folder.relative_to(runs_dir)),
                     "pipeline": json.loads(run_file.read_text()).get("pipeline"),
                     "steps": [{k: s.get(k) for k in ("name", "state", "seconds", "started",
                                                      "finished")}
                               for s in summary["steps"]]})
    return sorted(runs, key=lambda r: r["run"])  # a nested run after the run that started it


def print_demo(demo: dict) -> None:
    print(f"## make demo: {demo['command']}, {'succeeded' if demo['ok'] else 'FAILED'}")
    for run in demo["runs"]:
        for step in run["steps"]:
            print(f"{run['run']:<16}{step['name']:<20}{step['state']:<17}{step['seconds']:>8.1f} s")
    runs = sum(run_wall_time(run) for run in demo["runs"] if "/" not in run["run"])
    print(f"pipeline runs {runs:.1f} s, total wall time {demo['total_seconds']:.1f} s")


def run_wall_time(run: dict) -> float:
    """First step's start to last step's end: steps of one run may overlap."""
    ran = [s for s in run["steps"] if s.get("started") is not None]
    return max(s["finished"] for s in ran) - min(s["started"] for s in ran) if ran else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"demo with {' '.join(QUICK_ARGS)}")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    demo = measure(args.quick)
    print_demo(demo)
    if args.json:
        args.json.write_text(json.dumps(demo, indent=1))
    sys.exit(0 if demo["ok"] else 1)


if __name__ == "__main__":
    main()
