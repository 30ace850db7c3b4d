"""Training on new annotations, started by Label Studio's webhook: past `threshold` new
annotations (or on Label Studio's "Start training"), the project's annotations are exported from
Label Studio, imported as an ImageFolder and merged into the training pipeline's data
(`extra_data`), warm-started from the model that pre-labels. The new version is registered pending
approval, as every training run's is. One training at a time; the count and every training's
outcome are kept in `<work dir>/state.json`, so a restarted backend carries on."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from labelling.annotations import import_annotations
from pipelines.retrain import RunPipeline
from shared.atomic import write_json_atomic
from shared.errors import UserError

log = logging.getLogger(__name__)
TRAINING = Path(__file__).resolve().parent.parent / "pipelines" / "training.yaml"


def run_training_pipeline(definition: Path, params: dict[str, str], run_dir: Path) -> Any:
    from pipelines.definition import load_pipeline
    from pipelines.runner import Runner

    return Runner(load_pipeline(definition), params, run_dir, echo=False).run()


def fetch_export(label_studio: str, token: str, project: int, timeout: float = 120) -> list:
    """The project's annotated tasks, as Label Studio's JSON export."""
    url = f"{label_studio.rstrip('/')}/api/projects/{project}/export?exportType=JSON"
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
        raise UserError(f"could not export project {project} from {label_studio}: {exc}") from None


class Trainer:
    def __init__(self, work_dir: Path, classes: list[str], params: dict[str, str], *,
                 threshold: int, document_root: Path | None, definition: Path = TRAINING,
                 run_pipeline: RunPipeline = run_training_pipeline) -> None:
        if threshold < 1:
            raise UserError(f"the annotation threshold must be at least 1, got {threshold}")
        if not params.get("input_data"):
            raise UserError("training on new annotations needs the labelled data to train on"
                            " with them (--train-data, the training pipeline's input_data)")
        self.work_dir = Path(work_dir)
        self.classes, self.params, self.threshold = classes, params, threshold
        self.document_root, self.definition, self.run_pipeline = (document_root, definition,
                                                                  run_pipeline)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.state = self._load()

    def _load(self) -> dict[str, Any]:
        path = self.work_dir / "state.json"
        state = json.loads(path.read_text()) if path.is_file() else {}
        state.setdefault("new_annotations", 0)
        state.setdefault("trainings", [])
        for training in state["trainings"]:  # one a killed backend never finished
            if training["state"] == "running":
                training.update(state="interrupted", detail="the backend stopped during it")
        return state

    def _save(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.work_dir / "state.json", self.state)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def annotated(self, count: int = 1) -> None:
        with self._lock:
            self.state["new_annotations"] += count
            self._save()

    def due(self) -> bool:
        return self.state["new_annotations"] >= self.threshold

    def start(self, label_studio: str, token: str, project: int, reason: str) -> dict[str, Any]:
        """Start a training in the background unless one is running; the training's record."""
        with self._lock:
            if self.running:
                return {**self.state["trainings"][-1], "started": False}
            number = len(self.state["trainings"]) + 1
            training = {"number": number, "state": "running", "reason": reason,
                        "project": project, "annotations": self.state["new_annotations"],
                        "started": time.time(), "run_dir": str(self.work_dir / f"run-{number}")}
            self.state["trainings"].append(training)
            self.state["new_annotations"] = 0
            self._save()
            self._thread = threading.Thread(target=self._train, name=f"training-{number}",
                                            args=(training, label_studio, token, project),
                                            daemon=True)
            self._thread.start()
        return {**training, "started": True}

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _train(self, training: dict[str, Any], label_studio: str, token: str,
               project: int) -> None:
        number = training["number"]
        try:
            labels = self.work_dir / f"labels-{number}"
            report = import_annotations(fetch_export(label_studio, token, project), self.classes,
                                        labels, document_root=self.document_root,
                                        label_studio=label_studio, token=token)
            training["labels"] = report.to_json() | {"folder": str(labels)}
            if not report.imported:
                raise UserError(f"no annotation gave a label ({report.summary()})")
            params = {**self.params, "extra_data": str(labels), "reference_data": str(labels)}
            log.info("training %d: %s; running the training pipeline", number, report.summary())
            result = self.run_pipeline(self.definition, params, Path(training["run_dir"]))
            if (failed := result.failed_step) is not None:
                raise UserError(f"the training pipeline failed at {failed.name}: {failed.detail}")
            gate = result.held_by
            training.update(state="completed", detail=(
                f"registered {result.outputs('register')['version_dir']}, pending approval"
                if result.state("register") == "completed" else
                "trained, but the gate held the candidate back"
                + (f" ({gate.name}: {gate.detail})" if gate else "")))
        except Exception as exc:  # the backend keeps serving; the record says why
            log.exception("training %d failed", number)
            training.update(state="failed", detail=str(exc))
        training["finished"] = time.time()
        with self._lock:
            self._save()
        log.info("training %d %s: %s", number, training["state"], training["detail"])
