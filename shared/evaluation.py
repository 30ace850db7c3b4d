"""Where the figures sit in `evaluation.json` (SageMaker's multiclass model-quality layout).

The training job and the evaluate job write it; the pipelines' gate, the registry, the runner and
the demo read it, all through here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ACCURACY_PATH = "multiclass_classification_metrics.accuracy.value"


def field(report: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted path; KeyError naming the path when it is not there."""
    value: Any = report
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(f"evaluation has no field {dotted}")
        value = value[key]
    return value


def accuracy_of(report: dict[str, Any]) -> float:
    return float(field(report, ACCURACY_PATH))


def read_accuracy(path: Path) -> float:
    return accuracy_of(json.loads(Path(path).read_text()))
