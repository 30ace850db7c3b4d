"""Where the app looks for the registry and the runs: set by `python -m app` in the environment
of the Streamlit process it starts (a Streamlit script has no command line of its own)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REGISTRY_VARIABLE = "IMAGE_MLOPS_APP_REGISTRY"
RUNS_VARIABLE = "IMAGE_MLOPS_APP_RUNS"
# the defaults of `python -m pipelines run` and `python -m pipelines approve`
DEFAULT_REGISTRY = Path("registry")
DEFAULT_RUNS = Path("runs")


@dataclass(frozen=True)
class AppSettings:
    registry: Path
    runs: Path

    @classmethod
    def from_environment(cls) -> AppSettings:
        return cls(Path(os.environ.get(REGISTRY_VARIABLE) or DEFAULT_REGISTRY),
                   Path(os.environ.get(RUNS_VARIABLE) or DEFAULT_RUNS))
