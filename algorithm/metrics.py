"""The metrics a training job prints, and how SageMaker reads them from its log.

Each epoch prints `epoch=N train_loss=… train_accuracy=… val_loss=… val_accuracy=… lr=…`, and the
job ends with `<split> accuracy …` on the evaluation split (test, else validation). SageMaker
metric definitions are regular expressions over those lines; the algorithm specification and the
exported pipelines' estimators both take them from here.
"""

from __future__ import annotations

import re

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

METRIC_DEFINITIONS = (
    {"Name": "train:loss", "Regex": rf"train_loss={NUMBER}"},
    {"Name": "train:accuracy", "Regex": rf"train_accuracy={NUMBER}"},
    {"Name": "validation:loss", "Regex": rf"val_loss={NUMBER}"},
    {"Name": "validation:accuracy", "Regex": rf"val_accuracy={NUMBER}"},
    {"Name": "learning_rate", "Regex": rf"epoch=\d+ .* lr={NUMBER}"},
    {"Name": "test:accuracy", "Regex": rf"test accuracy {NUMBER}"},
)

# what a hyperparameter tuner may optimise (the per-epoch validation figures)
TUNING_OBJECTIVES = (
    {"Type": "Maximize", "MetricName": "validation:accuracy"},
    {"Type": "Minimize", "MetricName": "validation:loss"},
)


def metric_values(name: str, text: str) -> list[float]:
    """Every value of the metric definition `name` in log `text`, in order, as SageMaker reads
    them (the last one is what its hyperparameter tuner takes as a training job's objective)."""
    regex = next(m["Regex"] for m in METRIC_DEFINITIONS if m["Name"] == name)
    return [float(value) for value in re.findall(regex, text)]
