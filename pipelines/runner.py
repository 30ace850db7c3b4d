"""The local pipeline runner: steps in dependency order, each in its own folder, resumable.

Run folder layout: `<run dir>/<step>/` holds the step's `/opt_ml`, its `log.txt` and
`status.json` (state, fingerprint of its resolved definition and inputs, outputs, seconds, reason).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipelines import jobs, local_steps, retrain
from pipelines.definition import Pipeline, PipelineError, Step, load_pipeline, substitute
from shared.atomic import write_json_atomic
from shared.errors import UserError
from shared.evaluation import read_accuracy
from shared.names import remove_inside


@dataclass
class StepResult:
    name: str
    state: str  # completed, reused, condition-false, skipped, failed
    seconds: float = 0.0
    outputs: dict[str, Path] = field(default_factory=dict)
    detail: str = ""
    started: float | None = None  # wall-clock times (time.time()) of a step that ran
    finished: float | None = None


@dataclass
class RunResult:
    pipeline: str
    run_dir: Path
    steps: list[StepResult]

    @property
    def ok(self) -> bool:
        return self.failed_step is None

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if s.state == "failed"), None)

    @property
    def held_by(self) -> StepResult | None:
        """The condition that held the steps after it back (a gate), if one did."""
        return next((s for s in self.steps if s.state == "condition-false"), None)

    def outputs(self, step: str) -> dict[str, Path]:
        return next(s.outputs for s in self.steps if s.name == step)

    def state(self, step: str) -> str:
        return next(s.state for s in self.steps if s.name == step)

    def summary(self) -> str:
        lines = [f"pipeline {self.pipeline}: {'succeeded' if self.ok else 'FAILED'}"
                 f" (run folder {self.run_dir})", f"{'step':<22}{'state':<17}{'seconds':>8}"]
        for s in self.steps:
            lines.append(f"{s.name:<22}{s.state:<17}{s.seconds:>8.1f}"
                         + (f"  {s.detail}" if s.detail else ""))
        return "\n".join(lines)


def _content_fingerprint(path: Path) -> str:
    """Names, sizes and modification times below `path`: changes when its content changes."""
    digest = hashlib.sha256()
    path = Path(path)
    if path.is_file():
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return digest.hexdigest()
    for folder, dirs, files in sorted(os.walk(path, followlinks=True)):
        dirs.sort()
        for name in sorted(files):
            stat = (Path(folder) / name).stat()
            rel = os.path.relpath(Path(folder) / name, path)
            digest.update(f"{rel}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def fingerprint(step: Step, spec: dict[str, Any], upstream: dict[str, str]) -> str:
    """The step's resolved definition, its inputs' content and its upstream steps' fingerprints.

    Chaining the upstream fingerprints makes a change anywhere upstream rerun everything below.
    """
    inputs = {name: _content_fingerprint(Path(value)) if value and Path(value).exists() else None
              for name, value in (spec.get("inputs") or {}).items()}
    text = json.dumps({"job": step.job, "component": step.component, "mode": step.mode,
                       "spec": spec, "inputs": inputs, "upstream": upstream},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Runner:
    def __init__(self, pipeline: Pipeline, params: dict[str, str], run_dir: Path,
                 engine: jobs.Engine | None = None, resume: bool = False,
                 echo: bool = True, max_parallel: int | None = None) -> None:
        self.pipeline = pipeline
        self.params = pipeline.resolve_parameters(params)
        self.run_dir = Path(run_dir).resolve()
        self.engine = engine or jobs.Engine()
        self.resume = resume
        self.echo = echo
        self.cpus = sorted(os.sched_getaffinity(0))
        self.max_parallel = max(1, max_parallel or len(self.cpus))

    def say(self, text: str) -> None:
        if self.echo:
            print(text, flush=True)

    def run(self) -> RunResult:
        """Every step once its upstream steps are done; steps that do not depend on each other
        run at the same time (up to `max_parallel`), each on its own share of the CPUs."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.run_dir / "run.json", {
            "pipeline": self.pipeline.name, "definition": str(self.pipeline.source),
            "parameters": self.params, "engine": self.engine.name})
        outputs: dict[str, dict[str, Path]] = {}
        self.marks: dict[str, str] = {}
        results: dict[str, StepResult] = {}
        blocked: set[str] = set()  # steps after a failure or a false condition
        pending = list(self.pipeline.order)
        running: dict[Future, tuple[str, frozenset[int]]] = {}
        free = set(self.cpus)
        number = {name: i for i, name in enumerate(self.pipeline.order, start=1)}
        failed = False
        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
            while pending or running:
                if failed:  # a failure stops the run: what is running finishes, nothing starts
                    pending.clear()
                # skipped, and so is whatever reads from a skipped step, however far below
                while skip := [n for n in pending if self.pipeline.steps[n].upstream & blocked]:
                    for name in skip:
                        pending.remove(name)
                        results[name] = StepResult(name, "skipped",
                                                   detail="an earlier step did not pass")
                        blocked.add(name)
                        self.say(f"[{number[name]}/{len(number)}] {name}: skipped")
                ready = [n for n in pending if self.pipeline.steps[n].upstream <= results.keys()]
                # the CPUs split evenly among the steps that can run now
                share = max(1, len(self.cpus) // max(1, min(self.max_parallel,
                                                            len(running) + len(ready))))
                for name in ready:
                    if len(running) >= self.max_parallel or not free:
                        break
                    cpus = frozenset(sorted(free)[:share])
                    free -= cpus
                    pending.remove(name)
                    # the step's references are resolved from the finished steps' outputs
                    running[pool.submit(self.run_step, self.pipeline.steps[name], dict(outputs),
                                        f"[{number[name]}/{len(number)}] {name}", cpus)] = \
                        (name, cpus)
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name, cpus = running.pop(future)
                    free |= cpus
                    result = results[name] = future.result()
                    outputs[name] = result.outputs
                    if result.state in ("failed", "condition-false"):
                        blocked.add(name)
                    failed = failed or result.state == "failed"
        ordered = [results[n] for n in self.pipeline.order if n in results]
        summary = RunResult(self.pipeline.name, self.run_dir, ordered)
        write_json_atomic(self.run_dir / "summary.json", {
            "ok": summary.ok, "steps": [{"name": s.name, "state": s.state, "seconds": s.seconds,
                                         "started": s.started, "finished": s.finished,
                                         "detail": s.detail} for s in ordered]})
        return summary

    def run_step(self, step: Step, outputs: dict[str, dict[str, Path]], prefix: str,
                 cpus: frozenset[int] = frozenset()) -> StepResult:
        spec = substitute(step.spec, self.params, outputs)
        step_dir = self.run_dir / step.name
        status_file = step_dir / "status.json"
        print_ = self.say
        mark = fingerprint(step, spec, {name: self.marks[name] for name in sorted(step.upstream)})
        self.marks[step.name] = mark
        previous = json.loads(status_file.read_text()) if status_file.exists() else {}
        if (self.resume and previous.get("state") in ("completed", "condition-false")
                and previous.get("fingerprint") == mark):
            print_(f"{prefix}: unchanged since the last run, reused")
            state = "reused" if previous["state"] == "completed" else "condition-false"
            return StepResult(step.name, state, 0.0,
                              {k: None if v is None else Path(v)
                               for k, v in previous.get("outputs", {}).items()},
                              previous.get("detail", ""))
        if previous.get("fingerprint") != mark:
            remove_inside(self.run_dir, step_dir)  # inputs changed: start the job afresh
        step_dir.mkdir(parents=True, exist_ok=True)
        print_(f"{prefix}: running ({step.job}{' ' + step.component if step.component else ''}"
               f"{' ' + step.mode if step.mode else ''})")
        started, started_at = time.monotonic(), time.time()
        state, detail, step_outputs = "completed", "", {}
        engine = replace(self.engine, cpus=tuple(sorted(cpus)) or None)
        try:
            step_outputs, state, detail = self.execute(step, spec, step_dir, engine)
        except (jobs.StepFailed, UserError, OSError, RuntimeError) as exc:
            state, detail = "failed", str(exc)
        seconds, finished_at = time.monotonic() - started, time.time()
        write_json_atomic(status_file, {"state": state, "fingerprint": mark, "seconds": seconds,
                                        "started": started_at, "finished": finished_at,
                                        "cpus": sorted(cpus), "detail": detail,
                                        "outputs": {k: None if v is None else str(v)
                                                    for k, v in step_outputs.items()}})
        print_(f"{prefix}: {state} in {seconds:.1f} s" + (f": {detail}" if detail else ""))
        return StepResult(step.name, state, seconds, step_outputs, detail, started_at, finished_at)

    def run_nested(self, definition: Path, params: dict[str, str], run_dir: Path) -> RunResult:
        """Another pipeline run as a step (retraining), on this run's engine and CPUs."""
        return Runner(load_pipeline(definition), params, run_dir, self.engine, echo=self.echo,
                      max_parallel=self.max_parallel).run()

    def execute(self, step: Step, spec: dict[str, Any], step_dir: Path, engine: jobs.Engine):
        log_file = step_dir / "log.txt"
        if step.job == "processing":
            return jobs.processing_job(step, spec, step_dir, engine, log_file), "completed", ""
        if step.job == "training":
            outputs = jobs.training_job(step, spec, step_dir, engine, log_file)
            return outputs, "completed", _accuracy_note(outputs["model"])
        if step.job == "transform":
            return jobs.transform_job(step, spec, step_dir, engine, log_file), "completed", ""
        if step.job == "condition":
            holds, lines = local_steps.evaluate_condition(step, spec)
            return {}, "completed" if holds else "condition-false", "; ".join(lines)
        if step.job == "register":
            outputs = local_steps.register(step, spec, self.run_dir)
            return outputs, "completed", f"registered {outputs['version_dir']}"
        if step.job == "registered_model":
            outputs = local_steps.registered_model(step, spec)
            return outputs, "completed", local_steps.describe_choice(outputs)
        if step.job == "retrain":
            return retrain.retrain(step, spec, self.pipeline.source, step_dir, self.run_nested)
        if step.job == "report":
            return local_steps.batch_report(step, spec, step_dir / "output"), "completed", ""
        raise PipelineError(f"step {step.name}: unknown job {step.job}")


def _accuracy_note(model_dir: Path) -> str:
    evaluation = Path(model_dir) / "evaluation.json"
    if not evaluation.exists():
        return ""
    split = json.loads(evaluation.read_text()).get("evaluated_on", "test")
    return f"{split} accuracy {read_accuracy(evaluation):.4f}"
