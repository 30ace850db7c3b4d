"""What a tuning study leaves in its run folder (pipelines/tune.py runs the study).

- `trials.csv`: one row per trial: number, state (COMPLETE, PRUNED, FAIL, WAITING), the objective
  (validation:nll; a pruned trial's is its last epoch's), epochs_logged (the epochs reported
  to the pruner; `epochs` may be a searched hyperparameter), seconds, the searched
  hyperparameters, a note (why it was pruned or failed; an interrupted trial names the trial that
  tried its hyperparameters again) and its run folder.
- `best.json`: the best completed trial: its number, value, the searched values, every
  hyperparameter its training job received (its hyperparameters.json), its run folder, and how
  many trials completed, were pruned or failed.
- `optimization_history.png` (Optuna's), and from two completed trials `param_importances.png`
  (Optuna's default importance evaluator).
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from pipelines.search_space import OBJECTIVE
from shared.atomic import write_atomic, write_json_atomic
from shared.plotting import pyplot, save_figure

METRIC = OBJECTIVE["MetricName"]


def write_outputs(study: optuna.Study, run_dir: Path, train_step: str) -> None:
    """best.json, trials.csv and the plots, from the study as it stands."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for t in trials for name in t.params})
    columns = ["trial", "state", METRIC, "epochs_logged", "seconds", *names, "note", "run_dir"]
    retries = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for t in trials:
                seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
                    if t.datetime_complete and t.datetime_start else None
                note = t.user_attrs.get("note") or (
                    f"{again.user_attrs['retry_reason']}; tried again as trial {again.number}"
                    if (again := retries.get(t.number)) else "")
                writer.writerow([t.number, t.state.name, t.value, len(t.intermediate_values),
                                 None if seconds is None else round(seconds, 1),
                                 *[t.params.get(n) for n in names], note,
                                 t.user_attrs.get("run_dir")])

    write_atomic(run_dir / "trials.csv", write_csv)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return
    best = study.best_trial
    best_dir = Path(best.user_attrs["run_dir"])
    config = best_dir / train_step / "opt_ml" / "input" / "config" / "hyperparameters.json"
    write_json_atomic(run_dir / "best.json", {
        "trial": best.number, "metric": METRIC, "objective": OBJECTIVE["Type"], "value": best.value,
        "searched": best.params,
        "hyperparameters": json.loads(config.read_text()) if config.is_file() else None,
        "run_dir": str(best_dir), "trials": {
            "completed": sum(t.state == TrialState.COMPLETE for t in trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "failed": sum(t.state == TrialState.FAIL for t in trials)}})
    pyplot()  # no display, no math parsing
    from optuna.visualization import matplotlib as plots

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = plots.plot_optimization_history(study, target_name=METRIC)
        axes.figure.tight_layout()
        save_figure(axes.figure, run_dir / "optimization_history.png", dpi=100)
        if len(complete) >= 2:
            warnings.simplefilter("ignore")  # e.g. "importances will be equal" when they are
            axes = plots.plot_param_importances(study, target_name=METRIC)
            axes.figure.tight_layout()  # the names in full
            save_figure(axes.figure, run_dir / "param_importances.png", dpi=100)
