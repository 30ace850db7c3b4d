"""Tuning against the defaults: `python -m pipelines tune` on the textures data set, whose first
trial is the training job's defaults (`--enqueue`), then TRIALS - 1 trials from Optuna's TPE over
pipelines/search-space.yaml, with its median pruner.

Side A is the defaults trial's objective (validation:nll, the last epoch's validation
cross-entropy), side B the best trial's; B <= A by construction, so the check that counts is
whether tuning found something strictly better. The two trials' validation and test accuracy are
shown beside it, for information: the study never sees the test split.
Run: .venv/bin/python -m bench.tuning [--quick] [--json PATH]
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from algorithm.hyperparameters import Hyperparameters
from algorithm.metrics import metric_values
from bench.common import Comparison, finish, parser
from bench.quality_data import write
from pipelines.search_space import MINIMISED, OBJECTIVE, load_search_space
from pipelines.tune_outputs import METRIC

ROOT = Path(__file__).resolve().parent.parent
DATASET, TRIALS, QUICK_TRIALS = "textures", 12, 4


def defaults_trial() -> str:
    """The search space's hyperparameters at the training job's defaults, as --enqueue takes them."""
    defaults = Hyperparameters()
    return ",".join(f"{name}={getattr(defaults, name)}" for name in load_search_space())


def accuracy(trial_dir: Path) -> tuple[float, float]:
    """A trial's last validation accuracy and its test accuracy, from its training job's log."""
    log = (trial_dir / "train" / "log.txt").read_text()
    return metric_values("validation:accuracy", log)[-1], metric_values("test:accuracy", log)[-1]


def measure(trials: int) -> Comparison:
    with tempfile.TemporaryDirectory() as tmp:
        data, run_dir = Path(tmp) / "data", Path(tmp) / "tune"
        write(DATASET, data)
        command = [sys.executable, "-m", "pipelines", "tune", str(ROOT / "pipelines/training.yaml"),
                   "--trials", str(trials), "--param", f"input_data={data}", "--run-dir",
                   str(run_dir), "--enqueue", defaults_trial()]
        started = time.monotonic()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        seconds = time.monotonic() - started
        with open(run_dir / "trials.csv") as f:
            rows = list(csv.DictReader(f))
        complete = [r for r in rows if r["state"] == "COMPLETE"]
        first = rows[0]
        if first["state"] != "COMPLETE":
            raise RuntimeError(f"the defaults trial did not complete: {first}")
        best = (min if MINIMISED else max)(complete, key=lambda r: float(r[METRIC]))
        accuracies = {row["trial"]: accuracy(Path(row["run_dir"])) for row in (first, best)}
    default_value, best_value = float(first[METRIC]), float(best[METRIC])
    c = Comparison(
        bench="tuning", title=f"Tuning: {DATASET}, best of {trials} Optuna trials vs the defaults",
        workload=f"python -m pipelines tune pipelines/training.yaml --trials {trials} on {DATASET},"
                 f" first trial the defaults; objective {METRIC} (last epoch),"
                 f" {OBJECTIVE['Type'].lower()}d",
        side_a="defaults (trial 0)", a=default_value, side_b=f"best trial ({best['trial']})",
        b=best_value, unit=METRIC, target=1.0, lower_is_better=MINIMISED,
        checks={"tuning found a strictly better trial":
                best_value < default_value if MINIMISED else best_value > default_value})
    for row, side in ((first, "defaults"), (best, "best trial")):
        validation, test = accuracies[row["trial"]]
        c.notes.append(f"{side}: validation accuracy {validation:.4f}, test accuracy {test:.4f}")
    c.notes.append("states: " + ", ".join(f"{s} {sum(r['state'] == s for r in rows)}"
                                           for s in sorted({r['state'] for r in rows})))
    c.notes.append("best trial: " + ", ".join(f"{k}={best[k]}" for k in load_search_space()))
    c.notes.append(f"defaults: {defaults_trial()}; study wall time {seconds:.0f} s")
    return c


def main() -> None:
    args = parser(__doc__, f"{QUICK_TRIALS} trials").parse_args()
    finish(args, [measure(QUICK_TRIALS if args.quick else TRIALS)])


if __name__ == "__main__":
    main()
