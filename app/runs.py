"""Reading a local runner's run folder for people (pipelines/runner.py writes it).

`<run>/run.json` (pipeline, parameters), `<run>/summary.json` once the run is over, and per step
`<run>/<step>/status.json` (state, seconds, times, detail, outputs: name -> folder). The reports
are found through the steps' outputs: `evaluation.json` (the evaluate step), `drift.json` and its
plot (monitoring serve), the explanations' `summary.json` with its overlay PNGs, and the batch
report's `report.json`. A run still going has no summary yet: its steps are read from their
status files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.run_folder import StepStatus, read_json, read_steps
from shared.errors import UserError
from shared.evaluation import accuracy_of


class RunFolderError(UserError):
    """A folder that is not a pipeline run; the message says what was expected."""


@dataclass(frozen=True)
class GalleryImage:
    path: Path
    caption: str


@dataclass
class RunReport:
    """What the review page shows of one run; sections absent from the run are None or empty."""

    folder: Path
    pipeline: str
    parameters: dict[str, Any]
    steps: list[StepStatus]
    finished: bool
    ok: bool | None
    evaluation: dict[str, Any] | None = None
    confusion_matrix_png: Path | None = None
    drift: dict[str, Any] | None = None
    drift_png: Path | None = None
    gallery: list[GalleryImage] = field(default_factory=list)
    batch_report: dict[str, Any] | None = None
    registered: list[Path] = field(default_factory=list)  # version folders the run registered


def list_runs(root: Path) -> list[Path]:
    """Run folders under `root` (it may itself be one), newest first."""
    root = Path(root)
    if (root / "run.json").is_file():
        return [root]
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "run.json").is_file()]
    return sorted(runs, key=lambda p: (p / "run.json").stat().st_mtime, reverse=True)


def _first(folders: list[Path], pattern: str) -> Path | None:
    for folder in folders:
        found = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if found:
            return found[0]
    return None


def _gallery(summary_file: Path) -> list[GalleryImage]:
    summary = read_json(summary_file) or {}
    images = []
    for record in summary.get("images") or []:
        overlay = record.get("overlay")
        if overlay and (summary_file.parent / overlay).is_file():
            label = f"label {record['label']}, " if record.get("label") is not None else ""
            images.append(GalleryImage(summary_file.parent / overlay,
                                       f"{record.get('id')}: {label}predicted"
                                       f" {record.get('prediction')}"
                                       f" ({float(record.get('probability', 0)):.1%})"))
    return images


def read_run(folder: Path) -> RunReport:
    folder = Path(folder)
    run = read_json(folder / "run.json")
    if run is None:
        raise RunFolderError(f"{folder} is not a pipeline run folder (it has no run.json): pick a"
                             " folder that `python -m pipelines run` wrote")
    summary = read_json(folder / "summary.json")
    steps = read_steps(folder)
    report = RunReport(folder, str(run.get("pipeline", folder.name)), run.get("parameters") or {},
                       steps, summary is not None, None if summary is None else bool(summary.get("ok")))
    outputs = [path for s in steps for path in s.outputs.values()]
    evaluation = _first(outputs, "evaluation.json")
    if evaluation is not None and evaluation.parent.name == "evaluation":
        report.evaluation = read_json(evaluation)
        png = evaluation.parent / "confusion_matrix.png"
        report.confusion_matrix_png = png if png.is_file() else None
    drift = _first(outputs, "drift.json")
    if drift is not None:
        report.drift = read_json(drift)
        plot = drift.parent / str((report.drift or {}).get("plot") or "drift.png")
        report.drift_png = plot if plot.is_file() else None
    explanations = _first([s.outputs["explanations"] for s in steps if "explanations" in s.outputs],
                          "summary*.json")
    if explanations is not None:
        report.gallery = _gallery(explanations)
    batch = _first([s.outputs["report"] for s in steps if "report" in s.outputs], "report.json")
    if batch is not None:
        report.batch_report = read_json(batch)
    report.registered = [s.outputs["version_dir"] for s in steps if "version_dir" in s.outputs
                         and s.outputs["version_dir"].is_dir()]
    return report


def accuracy(evaluation: dict[str, Any]) -> float | None:
    try:
        return accuracy_of(evaluation)
    except (KeyError, TypeError, ValueError):
        return None


def confusion_rows(evaluation: dict[str, Any]) -> dict[str, dict[str, int]]:
    """actual class -> predicted class -> count, as evaluation.json holds it."""
    metrics = evaluation.get("multiclass_classification_metrics") or {}
    return metrics.get("confusion_matrix") or {}
