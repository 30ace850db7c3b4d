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

from shared.errors import UserError

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
        raise UserError(f"{path} is not valid JSON: {exc}") from None


def per_host_name(name: str, host: str | None) -> str:
    """The one naming rule for files that several hosts write into one output: the host's name
    goes before the suffix (`report.json` -> `report-algo-2.json`, `shard-00000.npy` ->
    `shard-00000-algo-2.npy`, `overlays/0001.png` -> `overlays/0001-algo-2.png`).

    `host` is None on a single host, whose files keep their plain names.
    """
    if not host:
        return name
    path = Path(name)
    return str(path.with_name(f"{path.stem}-{host}{path.suffix}"))


def under(relative: str) -> property:
    """A path property: `relative` below the job's base folder."""
    return property(lambda self: self.base / relative, doc=f"$SAGEMAKER_BASE_DIR/{relative}")


def named_under(relative: str):
    """A method `(name) -> path`: the folder `name` in `relative` below the job's base folder."""
    def folder(self, name: str) -> Path:
        return self.base / relative / name

    folder.__doc__ = f"$SAGEMAKER_BASE_DIR/{relative}/<name>"
    return folder


@dataclass(frozen=True)
class JobPaths:
    """The folders SageMaker lays out under /opt/ml: a training job (and Batch Transform or an
    endpoint, which read the model) uses the first group, a processing job the second."""

    base: Path

    # training jobs
    input_config = under("input/config")
    hyperparameters_file = under("input/config/hyperparameters.json")
    resource_config_file = under("input/config/resourceconfig.json")
    input_data_config_file = under("input/config/inputdataconfig.json")
    channel = named_under("input/data")
    model = under("model")
    output = under("output")
    output_data = under("output/data")
    failure_file = under("output/failure")
    checkpoints = under("checkpoints")

    # processing jobs: inputs and outputs are named like ProcessingInput/Output
    job_config_file = under("config/processingjobconfig.json")
    processing_resource_config_file = under("config/resourceconfig.json")
    message_file = under("output/message")
    processing_input = named_under("processing/input")
    processing_output = named_under("processing/output")
    # scratch space goes on the job's volume (beside the inputs), not the small root disk
    scratch_root = under("processing")

    @classmethod
    def current(cls) -> JobPaths:
        """The folders under today's $SAGEMAKER_BASE_DIR."""
        return cls(base_dir())
