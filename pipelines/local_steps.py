"""Steps the runner does itself: conditions, the model registry, the batch-inference report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.definition import OPERATORS, PipelineError, Step
from pipelines.registry import PENDING, Registry
from shared.atomic import write_json_atomic
from shared.choices import MODEL_DRIFT_FOLDER
from shared.data import ProcessedDataset
from shared.evaluation import field
from shared.names import check_name


def _coerce(value: Any) -> Any:
    """Parameters from the command line are strings: compare numbers as numbers."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        try:
            return float(value)
        except ValueError:
            return value
    return value


def evaluate_condition(step: Step, spec: dict[str, Any]) -> tuple[bool, list[str]]:
    """(all checks hold, one line per check) for a `condition` step."""
    path = Path(spec["file"])
    if not path.is_file():
        raise PipelineError(f"step {step.name}: condition file {path} does not exist")
    data = json.loads(path.read_text())
    lines, ok = [], True
    for check in spec.get("all") or []:
        op = check.get("op")
        if op not in OPERATORS:
            raise PipelineError(f"step {step.name}: operator {op!r} is not one of {OPERATORS}")
        try:
            actual = _coerce(field(data, check["path"]))
        except KeyError:
            raise PipelineError(f"step {step.name}: the condition's file {path} has no field"
                                f" {check['path']}") from None
        wanted = _coerce(check.get("value"))
        holds = {">=": actual >= wanted, ">": actual > wanted, "<=": actual <= wanted,
                 "<": actual < wanted, "==": actual == wanted, "!=": actual != wanted}[op]
        ok &= holds
        lines.append(f"{check['path']} = {actual!r} {op} {wanted!r}: {'yes' if holds else 'no'}")
    return ok, lines


def register(step: Step, spec: dict[str, Any], run_dir: Path) -> dict[str, Path]:
    """A new version of `model_name` in `registry` holding the step's inputs, with the step's
    `approval_status` (default PendingManualApproval)."""
    registry = Registry(Path(spec.get("registry") or "registry"),
                        _model_name(step, spec))
    inputs = {}
    for name, source in (spec.get("inputs") or {}).items():
        if source in (None, ""):
            continue
        if not Path(source).exists():
            raise PipelineError(f"step {step.name}: input {name} does not exist: {source}")
        inputs[name] = Path(source)
    version = registry.register(inputs, run_dir, spec.get("approval_status") or PENDING,
                                warm_start=spec.get("warm_start") or None)
    return {"version_dir": version.folder, **{name: version.folder / name for name in inputs}}


def registered_model(step: Step, spec: dict[str, Any]) -> dict[str, Path | None]:
    """The model (and its drift detector) a run uses: the `model` input when one is given, else the
    latest approved version of `model_name` in `registry`; with `optional: true`, none (outputs
    None, which leave the inputs they feed unset) when no version is approved."""
    inputs = spec.get("inputs") or {}
    if inputs.get("model") not in (None, ""):
        model = Path(inputs["model"])
        if not model.exists():
            raise PipelineError(f"step {step.name}: the model {model} does not exist")
        detector = Path(inputs["detector"]) if inputs.get("detector") not in (None, "") else (
            model / MODEL_DRIFT_FOLDER)
        if not detector.exists() and spec.get("optional"):
            detector = None  # a champion is compared, not monitored
        elif not detector.exists():
            raise PipelineError(f"step {step.name}: no drift detector for model {model}: give"
                                f" the detector input (the training pipeline's drift reference)")
        return {"model": model, "detector": detector}
    registry = Registry(Path(spec.get("registry") or "registry"), _model_name(step, spec))
    version = registry.latest_approved()
    if version is None and spec.get("optional"):  # e.g. no champion yet: nothing to compare with
        return {"model": None, "detector": None, "version_dir": None}
    if version is None:
        raise PipelineError(
            f"step {step.name}: model {registry.name} in {registry.folder.parent} has no approved"
            f" version ({registry.describe()}): approve one with `python -m pipelines approve"
            f" {registry.name} N --registry {registry.folder.parent}`, or give the model input")
    return {"model": version.folder / "model", "detector": version.folder / "detector",
            "version_dir": version.folder}


def describe_choice(outputs: dict[str, Path | None]) -> str:
    if outputs.get("version_dir"):
        return f"approved {outputs['version_dir']}"
    return f"given {outputs['model']}" if outputs.get("model") else "no approved version"


def _model_name(step: Step, spec: dict[str, Any]) -> str:
    return check_name(str(spec.get("model_name", "model")), f"step {step.name}: model package name")


def batch_report(step: Step, spec: dict[str, Any], out: Path) -> dict[str, Path]:
    """Join predictions with image ids (and labels), add the drift verdict and gallery link."""
    inputs = spec.get("inputs") or {}
    data = ProcessedDataset(Path(inputs["data"]))
    predictions_dir = Path(inputs["predictions"])
    rows_by_shard: dict[str, list[dict]] = {}
    for shard in data.shard_files():
        answer = predictions_dir / f"{shard.name}.out"
        if not answer.exists():
            raise PipelineError(f"step {step.name}: no prediction file {answer.name}")
        rows_by_shard[shard.name] = [json.loads(line) for line in answer.read_text().splitlines()
                                     if line.strip()]
    joined = []
    for record in data.records:
        prediction = rows_by_shard[record.shard][record.row]
        joined.append({"id": record.id, "label": record.label,
                       "prediction": prediction["label"],
                       "probability": prediction["probabilities"][prediction["label"]]})
    labelled = [r for r in joined if r["label"] is not None]
    accuracy = (sum(r["label"] == r["prediction"] for r in labelled) / len(labelled)
                if labelled else None)
    drift = None
    if inputs.get("drift"):
        drift_file = Path(inputs["drift"]) / "drift.json"
        if drift_file.exists():
            d = json.loads(drift_file.read_text())
            drift = {"drift": d["drift"], "p_value": d["p_value"], "distance": d.get("distance"),
                     "plot": str(next(Path(inputs["drift"]).glob("*.png"), ""))}
    gallery = None
    if inputs.get("explanations"):
        index = Path(inputs["explanations"]) / "index.html"
        gallery = str(index) if index.exists() else None
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "predictions.jsonl", "w") as f:
        for row in joined:
            f.write(json.dumps(row) + "\n")
    summary = {"images": len(joined), "labelled": len(labelled), "accuracy": accuracy,
               "drift": drift, "explanations_gallery": gallery,
               "predictions": str(out / "predictions.jsonl")}
    write_json_atomic(out / "report.json", summary)
    return {"report": out}
