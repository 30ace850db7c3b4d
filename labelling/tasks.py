"""Label Studio tasks from a batch-inference run: the images worth a person's time, each with the
model's prediction as a pre-annotation.

`--select drifted`: the images of the drift test's windows that drifted (all of them when the
whole batch drifted and no windows were tested); `uncertain`: every image, least confident first;
`all`: every image in file order. Drifted images are ordered least confident first too, so
`--max-tasks` keeps the ones the model knows least.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelling.config import choice_result, label_config
from labelling.images import local_files_url, prefixed_url
from labelling.model import model_version
from pipelines.run_folder import read_steps
from shared.atomic import published_folder, write_json_atomic, write_text_atomic
from shared.errors import UserError
from shared.models.artifact import load_config

SELECTIONS = ("drifted", "uncertain", "all")
TASKS, CONFIG = "tasks.json", "label_config.xml"


@dataclass(frozen=True)
class BatchRun:
    """What the tasks need from a local batch-inference run folder."""

    folder: Path
    input_data: Path
    predictions: list[dict[str, Any]]  # id, prediction, probability (and label)
    drift: dict[str, Any] | None
    drift_names: list[str]  # the drift test's image ids, in the order its windows index
    model: Path

    @classmethod
    def open(cls, folder: Path) -> BatchRun:
        folder = Path(folder)
        if not (folder / "run.json").is_file():
            raise UserError(f"{folder} is not a pipeline run folder (no run.json): give the run"
                            " folder of a batch-inference run")
        run = json.loads((folder / "run.json").read_text())
        outputs = {}
        for step in read_steps(folder):
            if step.state in ("completed", "reused"):
                for name, path in step.outputs.items():
                    if kind := _kind(name, path):
                        outputs[kind] = path
        if "predictions" not in outputs or "model" not in outputs:
            raise UserError(f"{folder} holds no completed batch-inference report (predictions"
                            " and the model): run the batch pipeline to its report step first")
        predictions = [json.loads(line) for line in
                       (outputs["predictions"] / "predictions.jsonl").read_text().splitlines()
                       if line.strip()]
        drift, names = None, []
        if "drift" in outputs:
            drift = json.loads((outputs["drift"] / "drift.json").read_text())
            features = outputs["drift"] / drift.get("features", "features.npz")
            if features.is_file():
                names = [str(n) for n in np.load(features)["names"]]
        return cls(folder, Path(run["parameters"]["input_data"]), predictions, drift, names,
                   outputs["model"])


def _kind(name: str, path: Path) -> str | None:
    """Which output of the run a step's output is (by what it holds), or None: one it needs not."""
    if (path / "predictions.jsonl").is_file():
        return "predictions"
    if (path / "drift.json").is_file():
        return "drift"
    return "model" if name == "model" else None


def select(run: BatchRun, how: str, max_tasks: int | None) -> list[dict[str, Any]]:
    """The predictions chosen by `how`, at most `max_tasks`."""
    if how not in SELECTIONS:
        raise UserError(f"--select {how!r} is not one of {', '.join(SELECTIONS)}")
    rows = run.predictions
    if how == "drifted":
        wanted = drifted_ids(run)
        rows = sorted((r for r in rows if r["id"] in wanted), key=lambda r: r["probability"])
    elif how == "uncertain":
        rows = sorted(rows, key=lambda r: r["probability"])
    return rows[:max_tasks] if max_tasks is not None else rows


def drifted_ids(run: BatchRun) -> set[str]:
    if not run.drift:
        raise UserError(f"{run.folder} has no drift report: --select drifted needs the batch"
                        " pipeline's drift step (or use --select uncertain|all)")
    if not run.drift.get("drift"):
        return set()
    windows = [w for w in run.drift.get("windows") or [] if w.get("drift")]
    if not windows:  # the whole batch drifted, no window tested on its own
        return {r["id"] for r in run.predictions}
    if not run.drift_names:
        raise UserError(f"the drift report of {run.folder} lists windows but not its images"
                        " (features.npz is missing)")
    return {name for w in windows for name in run.drift_names[w["start"]:w["end"]]}


def export_tasks(run_dir: Path, out: Path, *, how: str = "drifted", max_tasks: int | None = None,
                 document_root: Path | None = None, url_prefix: str | None = None) -> dict:
    """Write `tasks.json` (Label Studio import JSON) and `label_config.xml` into `out`."""
    if max_tasks is not None and max_tasks < 1:
        raise UserError(f"--max-tasks must be at least 1, got {max_tasks}")
    run = BatchRun.open(run_dir)
    rows = select(run, how, max_tasks)
    classes = list(load_config(run.model).class_names)
    version = model_version(run.model)
    root = Path(document_root) if document_root else run.input_data
    tasks = []
    for row in rows:
        image = run.input_data / row["id"]
        url = prefixed_url(image, run.input_data, url_prefix) if url_prefix else (
            local_files_url(image, root))
        tasks.append({"data": {"image": url, "image_id": row["id"], "run": str(run.folder.resolve())},
                      "predictions": [{"model_version": version, "score": row["probability"],
                                       "result": choice_result(row["prediction"])}]})
    with published_folder(Path(out)) as staged:
        write_json_atomic(staged / TASKS, tasks)
        write_text_atomic(staged / CONFIG, label_config(classes))
    return {"tasks": len(tasks), "selected": how, "model_version": version,
            "document_root": None if url_prefix else str(root.resolve()), "out": str(out)}
