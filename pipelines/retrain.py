"""Drift-triggered retraining as a pipeline step: the training pipeline, run by the batch pipeline.

A `retrain` step runs after the batch pipeline's drift verdict held (its upstream condition), and
runs the training pipeline (`definition`, relative to the batch pipeline's file) with the `params`
it names: the configured labelled data, the model in use as the warm start, and the new labelled
images as the new version's drift reference. It does nothing when no data to retrain on is
configured, and the guard below keeps the loop from retraining forever:

- **Reference policy.** A retrained version's drift reference is the newly labelled production
  images it was retrained with (the training pipeline's `reference_data`), not the old training
  set: once it is approved, the same shifted production data no longer reads as drift.
- **Guard.** No retraining while a version already retrained from the model in use is
  PendingManualApproval (a person has yet to look at it) or Rejected (a person declined it: retrain
  by hand). A second batch of the same shifted data therefore starts nothing until the pending
  version is approved, after which it is the model in use, with its new reference.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.definition import PipelineError, Step
from pipelines.registry import PENDING, REJECTED, Registry

RunPipeline = Callable[[Path, dict[str, str], Path], Any]  # (definition, params, run dir) -> result


def retrain(step: Step, spec: dict[str, Any], source: Path, step_dir: Path,
            run_pipeline: RunPipeline) -> tuple[dict[str, Path], str, str]:
    """(outputs, state, detail) of a `retrain` step; `source` is the batch pipeline's file."""
    params = {k: str(v) for k, v in (spec.get("params") or {}).items() if v not in (None, "")}
    if "input_data" not in params:
        return {}, "condition-false", "no retraining configured: no labelled data given to" \
                                      " retrain on (the batch pipeline's retrain_input_data)"
    model = spec.get("model")
    if not model:
        raise PipelineError(f"step {step.name}: a retrain step needs the model in use (model:)")
    registry = Registry(Path(spec.get("registry") or "registry"), str(spec.get("model_name")))
    held = [v for v in registry.retrained_from(Path(model)) if v.status in (PENDING, REJECTED)]
    if held:
        version = held[-1]
        return {}, "condition-false", (
            f"v{version.number}, retrained from the model in use ({model}), is {version.status}:"
            " not retraining again until a version is approved")
    definition = (Path(source).parent / str(spec.get("definition", "training.yaml"))).resolve()
    result = run_pipeline(definition, params, step_dir / "run")
    if (failed := result.failed_step) is not None:
        raise PipelineError(f"step {step.name}: the retraining run failed at {failed.name}:"
                            f" {failed.detail}")
    if result.state("register") != "completed":
        gate = result.held_by
        return {"run_dir": step_dir / "run"}, "completed", (
            "retrained, but the gate held the candidate back"
            + (f" ({gate.name}: {gate.detail})" if gate else ""))
    version_dir = result.outputs("register")["version_dir"]
    return ({"run_dir": step_dir / "run", "version_dir": version_dir}, "completed",
            f"retrained: registered {version_dir}, pending approval")
