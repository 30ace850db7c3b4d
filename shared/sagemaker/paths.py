"""Where SageMaker puts things, under `$SAGEMAKER_BASE_DIR` (default `/opt/ml`).

The variable is read on every call, not at import, so tests and the local pipeline runner can point
each job at its own folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"
DEFAULT_BASE_DIR = "/opt/ml"


def base_dir() -> Path:
    return Path(os.environ.get(BASE_DIR_ENV, DEFAULT_BASE_DIR))


def read_config(path: Path, default: Any = None) -> Any:
    """A SageMaker JSON config file, or `default` when the job was not given one."""
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class TrainingPaths:
    """A training job's folders (also what Batch Transform / endpoints read the model from)."""

    base: Path

    @classmethod
    def current(cls) -> TrainingPaths:
        return cls(base_dir())

    @property
    def input_config(self) -> Path:
        return self.base / "input" / "config"

    @property
    def hyperparameters_file(self) -> Path:
        return self.input_config / "hyperparameters.json"

    @property
    def resource_config_file(self) -> Path:
        return self.input_config / "resourceconfig.json"

    @property
    def input_data_config_file(self) -> Path:
        return self.input_config / "inputdataconfig.json"

    def channel(self, name: str) -> Path:
        return self.base / "input" / "data" / name

    @property
    def model(self) -> Path:
        return self.base / "model"

    @property
    def output(self) -> Path:
        return self.base / "output"

    @property
    def output_data(self) -> Path:
        return self.output / "data"

    @property
    def failure_file(self) -> Path:
        return self.output / "failure"

    @property
    def checkpoints(self) -> Path:
        return self.base / "checkpoints"


@dataclass(frozen=True)
class ProcessingPaths:
    """A processing job's folders; inputs and outputs are named like ProcessingInput/Output."""

    base: Path

    @classmethod
    def current(cls) -> ProcessingPaths:
        return cls(base_dir())

    def input(self, name: str) -> Path:
        return self.base / "processing" / "input" / name

    def output(self, name: str) -> Path:
        return self.base / "processing" / "output" / name

    @property
    def job_config_file(self) -> Path:
        return self.base / "config" / "processingjobconfig.json"

    @property
    def resource_config_file(self) -> Path:
        return self.base / "config" / "resourceconfig.json"

    @property
    def message_file(self) -> Path:
        return self.base / "output" / "message"
