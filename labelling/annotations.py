"""Label Studio's JSON export -> an ImageFolder (`<class>/<image>`) the training pipeline merges as
its extra labelled data, with every task that gives no label reported and left out.

A task gives a label when its annotations that were not cancelled all choose the same single
class of the model. Reported, not imported: tasks with no annotation (unlabelled), only cancelled
ones (skipped), annotations that disagree or choose several classes (ambiguous), a class the model
does not have (unknown class), and images that cannot be read (missing image).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelling.config import chosen_labels
from labelling.images import ImageSourceError, local_file, read_image
from shared.atomic import published_folder, write_json_atomic
from shared.data.images import ImageDecodeError, is_image_name, load_rgb
from shared.errors import UserError

REPORT = "labels.json"  # beside the class folders; the processing job reads only images
REASONS = ("unlabelled", "skipped", "ambiguous", "unknown class", "missing image")


@dataclass
class ImportReport:
    imported: Counter = field(default_factory=Counter)  # class -> images
    left_out: list[dict[str, Any]] = field(default_factory=list)  # task, image, reason, detail

    def to_json(self) -> dict[str, Any]:
        reasons = Counter(r["reason"] for r in self.left_out)
        return {"images": sum(self.imported.values()), "per_class": dict(sorted(self.imported.items())),
                "left_out": {r: reasons[r] for r in REASONS if reasons[r]},
                "tasks_left_out": self.left_out}

    def summary(self) -> str:
        data = self.to_json()
        left = ", ".join(f"{n} {r}" for r, n in data["left_out"].items()) or "none"
        return (f"{data['images']} labelled images in {len(self.imported)} classes; left out:"
                f" {left}")


def read_export(path: Path) -> list[dict[str, Any]]:
    try:
        tasks = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"no Label Studio export at {path}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not JSON ({exc}): export the project as JSON from Label"
                        " Studio (Export > JSON)") from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and "data" in t for t in tasks):
        raise UserError(f"{path} is not a Label Studio JSON export (a list of tasks with 'data');"
                        " JSON_MIN and CSV exports leave out what the import needs")
    return tasks


def task_label(task: dict[str, Any], classes: list[str]) -> tuple[str | None, str, str]:
    """(class, reason left out, detail): the class when the task gives one, else a reason."""
    annotations = task.get("annotations") or []
    kept = [a for a in annotations if not a.get("was_cancelled")]
    if not annotations:
        return None, "unlabelled", "no annotation"
    if not kept:
        return None, "skipped", "every annotation was cancelled"
    choices = [chosen_labels(a.get("result")) for a in kept]
    distinct = {c for chosen in choices for c in chosen}
    if any(len(chosen) != 1 for chosen in choices) or len(distinct) != 1:
        return None, "ambiguous", f"annotations choose {sorted(distinct) or 'nothing'}"
    label = distinct.pop()
    if label not in classes:
        return None, "unknown class", f"{label!r} is not one of the model's classes {classes}"
    return label, "", ""


def import_annotations(tasks: list[dict[str, Any]], classes: list[str], out: Path, *,
                       document_root: Path | None = None, label_studio: str | None = None,
                       token: str | None = None, image_key: str = "image") -> ImportReport:
    """Write the labelled images of `tasks` as `out/<class>/<task id>-<name>`, published whole (a
    failure leaves no half-written folder), with `labels.json` reporting what was left out."""
    report = ImportReport()
    with published_folder(Path(out)) as staged:
        for task in tasks:
            task_id = task.get("id", "?")
            url = str((task.get("data") or {}).get(image_key, ""))
            label, reason, detail = task_label(task, classes)
            if label is None:
                report.left_out.append({"task": task_id, "image": url, "reason": reason,
                                        "detail": detail})
                continue
            try:
                data = read_image(url, document_root, label_studio, token)
                image = load_rgb(data)  # a corrupt file would fail the training job later
            except (ImageSourceError, ImageDecodeError) as exc:
                report.left_out.append({"task": task_id, "image": url, "reason": "missing image",
                                        "detail": str(exc)})
                continue
            (staged / label).mkdir(exist_ok=True)
            name = _file_name(url, document_root, image.info.get("format"))
            (staged / label / f"{task_id}-{name}").write_bytes(data)
            report.imported[label] += 1
        write_json_atomic(staged / REPORT, report.to_json())
    return report


def _file_name(url: str, root: Path | None, image_format: str | None) -> str:
    """A safe file name for the image, with an image extension (the processing job finds images
    by their extension)."""
    path = local_file(url, root) if root is not None else None
    name = path.name if path else url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "image"
    return name if is_image_name(name) else f"{name}.{(image_format or 'png').lower()}"
