"""`python -m pipelines tune FILE.yaml --trials N`: an Optuna study over the pipeline's training job.

- **Trials.** The steps the training step reads from (the training pipeline's `process`) run once,
  in the run folder, through the runner. Each trial is then a run of the training step alone with
  the trial's hyperparameters set over the YAML's, in `<run>/trial-NNN/` (a run folder of its own
  whose `process` links to the shared one, so the runner reuses it), on the runner's engine: the
  entrypoints or the images. Hyperparameters come from the search space (pipelines/search_space.py)
  through Optuna's TPE sampler; `--enqueue` names trials to run first (e.g. the current defaults).
- **Objective.** validation:nll (algorithm/metrics.py: the validation cross-entropy without label
  smoothing), minimised: the last value the job logs, as SageMaker's tuner reads a training job's
  objective metric, so a local study and the exported tuner rank trials alike. (The job's model
  holds its best epoch's weights.)
- **Pruning.** The job's log is read while it runs; each epoch's val_nll goes to Optuna as an
  intermediate value. Optuna's MedianPruner stops a trial whose best value so far is worse than
  the median of the completed trials at that epoch (once `startup_trials` trials have completed, from
  the epoch after `warmup_epochs`): the job is stopped as StopTrainingJob stops one (SIGTERM) and
  the trial is PRUNED, with the values up to the pruning epoch. Decisions depend on the values
  alone, not on when the log was read.
- **Resume.** The study is `<run>/study.db` (SQLite). The same command with the same `--run-dir`
  resumes it: finished trials are kept; a trial left running by a tuner that died, or stopped by
  Ctrl-C or SIGTERM (which stop its job first), is marked FAIL and its hyperparameters are tried
  again; the study goes on until
  `--trials` trials have finished (completed, pruned or failed), never rerunning one. Changed
  parameters or search space are refused (they would mix two studies); a lock keeps a second
  tuner out of a folder in use.
- **Outputs** in the run folder (pipelines/tune_outputs.py): best.json, trials.csv and Optuna's
  plots. `register` runs the whole pipeline in the best trial's run folder: its processing and
  training are reused as they are, and its model is evaluated, gated and registered pending
  approval as `pipelines run` would.
"""

from __future__ import annotations

import fcntl
import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from algorithm.metrics import metric_values
from pipelines.definition import Pipeline, Step
from pipelines.jobs import Engine
from pipelines.runner import Runner, RunResult
from pipelines.search_space import MINIMISED, OBJECTIVE, Choices, Dimension, space_as_json, tuned_step
from pipelines.tune_outputs import METRIC, write_outputs
from shared.errors import UserError
from shared.schema import unquote

INTERRUPTED = "the tuner was interrupted"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def with_hyperparameters(pipeline: Pipeline, step: Step, values: dict[str, str]) -> Pipeline:
    """The pipeline with `values` set over `step`'s hyperparameters."""
    spec = {**step.spec, "hyperparameters": {**(step.spec.get("hyperparameters") or {}), **values}}
    return replace(pipeline, steps={**pipeline.steps, step.name: replace(step, spec=spec)})


def only(pipeline: Pipeline, name: str, inclusive: bool = True) -> Pipeline:
    """The pipeline cut down to step `name` (or not) and every step it reads from."""
    needed, stack = set(), list(pipeline.steps[name].upstream)
    while stack:
        current = stack.pop()
        if current not in needed:
            needed.add(current)
            stack.extend(pipeline.steps[current].upstream)
    needed |= {name} if inclusive else set()
    return replace(pipeline, steps={n: pipeline.steps[n] for n in needed},
                   order=[n for n in pipeline.order if n in needed])


def suggest(trial: optuna.Trial, name: str, dimension: Dimension) -> Any:
    if isinstance(dimension, Choices):
        return trial.suggest_categorical(name, list(dimension.values))
    if dimension.integer:
        return trial.suggest_int(name, int(dimension.low), int(dimension.high), log=dimension.log)
    return trial.suggest_float(name, dimension.low, dimension.high, log=dimension.log)


class EpochWatcher:
    """A running trial's training log, read as it grows: each epoch's objective goes to Optuna,
    and the pruner's verdict comes back as the reason to stop the job (the engine's stop_when)."""

    def __init__(self, step_dir: Path, trial: optuna.Trial, interrupted: threading.Event) -> None:
        self.step_dir, self.trial, self.interrupted = step_dir, trial, interrupted
        self.values: list[float] = []
        self.offset = 0
        self.pruned: str | None = None

    def __call__(self) -> str | None:
        if self.interrupted.is_set():
            return INTERRUPTED
        self.read()
        return self.pruned

    def read(self) -> None:
        # one host logs to log.txt; of several, the first (rank 0, which prints the epochs)
        log = next((p for p in (self.step_dir / "log.txt", self.step_dir / "log-algo-1.txt")
                    if p.is_file()), None)
        if log is None:
            return
        with open(log, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        chunk = chunk[:chunk.rfind(b"\n") + 1]  # whole lines only
        self.offset += len(chunk)
        for value in metric_values(METRIC, chunk.decode(errors="replace")):
            if self.pruned:  # logged while the job was being stopped: not the trial's
                break
            self.values.append(value)
            self.trial.report(value, len(self.values))
            if self.trial.should_prune():
                best = (min if MINIMISED else max)(self.values)
                self.pruned = (f"pruned at epoch {len(self.values)}: {METRIC} at best {best:.4f},"
                               f" worse than the completed trials' median")


@contextmanager
def signals_set(event: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `event` instead of ending the tuner at once: the running job is
    stopped and its trial recorded as interrupted before the tuner exits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, lambda *_: event.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def folder_lock(run_dir: Path) -> Iterator[None]:
    with open(run_dir / "study.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another tune is using {run_dir}; wait for it to end, or pass another"
                            " --run-dir") from None
        yield


def count_finished(study: optuna.Study) -> int:
    """Trials that count towards --trials: finished, less the interrupted ones tried again."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    return sum(t.state in FINISHED and t.number not in retried for t in trials)


def retry(study: optuna.Study, trial: FrozenTrial | optuna.Trial, reason: str) -> None:
    """An interrupted trial: FAIL, and its hyperparameters enqueued to be tried again."""
    study.tell(trial if isinstance(trial, optuna.Trial) else trial.number, state=TrialState.FAIL)
    study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number,
                                                        "retry_reason": reason})


@dataclass
class Tuner:
    """A study over `pipeline`'s training step, in `run_dir`, searching `space`."""

    pipeline: Pipeline
    params: dict[str, str]  # --param
    run_dir: Path
    space: dict[str, Dimension]
    engine: Engine = field(default_factory=Engine)
    seed: int | None = None
    startup_trials: int = 3
    warmup_epochs: int = 1
    enqueue: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.startup_trials < 0 or self.warmup_epochs < 0:
            raise UserError("--pruner-startup-trials and --pruner-warmup-epochs must be >= 0")
        self.run_dir = Path(self.run_dir).resolve()
        self.train = tuned_step(self.pipeline)
        self.before = only(self.pipeline, self.train.name, inclusive=False)
        self.resolved = self.pipeline.resolve_parameters(self.params)
        self.interrupted = threading.Event()

    def trial_dir(self, number: int) -> Path:
        return self.run_dir / f"trial-{number:03d}"

    def settings(self) -> dict[str, Any]:
        """What makes two trials comparable: the study refuses to resume with other settings."""
        used = set().union(*(s.references()[0] for s in
                             only(self.pipeline, self.train.name).steps.values()))
        return json.loads(json.dumps({
            "pipeline": self.pipeline.name, "training_step": self.train.name,
            "parameters": {k: v for k, v in self.resolved.items() if k in used},
            "search_space": space_as_json(self.space)}, default=str))

    def open_study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(
            storage=f"sqlite:///{self.run_dir / 'study.db'}", study_name=self.pipeline.name,
            direction=OBJECTIVE["Type"].lower(), load_if_exists=True,
            pruner=optuna.pruners.MedianPruner(n_startup_trials=self.startup_trials,
                                               n_warmup_steps=self.warmup_epochs + 1))
        known, settings = study.user_attrs.get("settings"), self.settings()
        if known is None:
            study.set_user_attr("settings", settings)
            for values in self.enqueue:
                study.enqueue_trial(values)
        elif known != settings:
            before = {k: v for k, v in known.items() if settings.get(k) != v}
            raise UserError(f"the study in {self.run_dir} was started with other settings"
                            f" ({json.dumps(before)}); resume it with the same ones, or pass"
                            " another --run-dir")
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            retry(study, trial, "the tuner died while it ran")
            print(f"trial {trial.number} was interrupted: trying its hyperparameters again")
        # a seeded sampler draws anew on resume (the same seed would repeat the first draws)
        study.sampler = optuna.samplers.TPESampler(
            seed=None if self.seed is None else self.seed + len(study.trials))
        return study

    def run(self, trials: int) -> optuna.Study:
        """Run trials until `trials` have finished; write the outputs."""
        if trials < 1:
            raise UserError(f"--trials {trials}: expected at least 1")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with folder_lock(self.run_dir), signals_set(self.interrupted):
            study = self.open_study()
            done = count_finished(study)
            print(f"tuning {self.pipeline.name}: {done} of {trials} trials finished; searching"
                  f" {', '.join(self.space)} (study {self.run_dir / 'study.db'})", flush=True)
            if done < trials:
                stop = replace(self.engine, stop_when=lambda: INTERRUPTED
                               if self.interrupted.is_set() else None)
                prepared = Runner(self.before, self.params, self.run_dir, stop, resume=True).run()
                if self.interrupted.is_set():
                    raise KeyboardInterrupt
                if not prepared.ok:
                    raise UserError(f"step {prepared.failed_step.name} failed:"
                                    f" {prepared.failed_step.detail}")
            for _ in range(trials - done):
                if self.interrupted.is_set():
                    raise KeyboardInterrupt
                self.run_trial(study)
            write_outputs(study, self.run_dir, self.train.name)
        return study

    def run_trial(self, study: optuna.Study) -> None:
        trial = study.ask()
        values = {name: suggest(trial, name, d) for name, d in self.space.items()}
        overrides = {name: unquote(value) for name, value in values.items()}
        run_dir = self.trial_dir(trial.number)
        trial.set_user_attr("hyperparameters", overrides)
        trial.set_user_attr("run_dir", str(run_dir))
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in self.before.order:  # the shared steps, reused by the runner
            if not (run_dir / name).is_symlink():
                (run_dir / name).symlink_to(Path("..") / name)
        watcher = EpochWatcher(run_dir / self.train.name, trial, self.interrupted)
        pipeline = only(with_hyperparameters(self.pipeline, self.train, overrides), self.train.name)
        result = Runner(pipeline, self.params, run_dir, replace(self.engine, stop_when=watcher),
                        resume=True, echo=False).run()
        if self.interrupted.is_set():
            retry(study, trial, INTERRUPTED)
            raise KeyboardInterrupt
        watcher.read()  # the lines logged after the last look
        state, note = outcome(result, watcher)
        trial.set_user_attr("note", note)
        told = study.tell(trial, watcher.values[-1] if state == TrialState.COMPLETE else None,
                          state=state)
        shown = ", ".join(f"{k}={v}" for k, v in overrides.items())
        value = "" if told.value is None else f" {METRIC} {told.value:.4f}"
        print(f"trial {trial.number} ({shown}): {state.name.lower()}{value}"
              f"{': ' + note if note else ''}", flush=True)

    @staticmethod
    def best(study: optuna.Study) -> FrozenTrial | None:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return study.best_trial if complete else None

    def best_pipeline(self, study: optuna.Study) -> Pipeline:
        """The whole pipeline with the best trial's hyperparameters, exactly as its trial set them
        (so the runner finds that trial's training step unchanged and reuses it)."""
        return with_hyperparameters(self.pipeline, self.train,
                                    study.best_trial.user_attrs["hyperparameters"])

    def register(self, study: optuna.Study) -> RunResult:
        """The whole pipeline in the best trial's run folder: its steps so far are reused."""
        return Runner(self.best_pipeline(study), self.params,
                      self.trial_dir(study.best_trial.number), self.engine, resume=True).run()


def outcome(result: RunResult, watcher: EpochWatcher) -> tuple[TrialState, str]:
    if watcher.pruned:
        return TrialState.PRUNED, watcher.pruned
    if result.failed_step is not None:
        return TrialState.FAIL, f"{result.failed_step.name}: {result.failed_step.detail}"
    if not watcher.values:
        return TrialState.FAIL, f"the training job logged no {METRIC}"
    return TrialState.COMPLETE, ""
