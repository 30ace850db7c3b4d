"""Reading a local runner's run folder (pipelines/runner.py writes it): `<run>/run.json`, per step
`<run>/<step>/status.json` (state, seconds, times, detail, outputs: name -> folder) and, once the run
is over, `<run>/summary.json`. The review app and the Label Studio tasks read runs through here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StepStatus:
    name: str
    state: str
    seconds: float | None
    started: float | None
    detail: str
    outputs: dict[str, Path]


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _step(folder: Path, name: str, status: dict[str, Any]) -> StepStatus:
    outputs = {}
    for key, value in (status.get("outputs") or {}).items():
        if value is None:
            continue
        path = Path(value)
        if not path.exists():  # the run folder was moved: the same output, under its new place
            path = folder / name / "opt_ml" / "processing" / "output" / key
        outputs[key] = path
    return StepStatus(name, str(status.get("state", "unknown")), status.get("seconds"),
                      status.get("started"), str(status.get("detail") or ""), outputs)


def read_steps(folder: Path) -> list[StepStatus]:
    """Every step with a status file, in the order they started (steps not yet done: last)."""
    steps = []
    for status_file in folder.glob("*/status.json"):
        status = read_json(status_file)
        if status is not None:
            steps.append(_step(folder, status_file.parent.name, status))
    summary = read_json(folder / "summary.json") or {}
    for entry in summary.get("steps") or []:  # steps that never ran (skipped) have no folder
        if entry.get("name") not in {s.name for s in steps}:
            steps.append(StepStatus(entry["name"], entry.get("state", "unknown"),
                                    entry.get("seconds"), entry.get("started"),
                                    entry.get("detail") or "", {}))
    return sorted(steps, key=lambda s: (s.started is None, s.started or 0.0, s.name))
