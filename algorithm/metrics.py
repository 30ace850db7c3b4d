"""The metrics a training job prints, and how SageMaker reads them from its log.

Each epoch prints `epoch=N train_loss=… train_accuracy=… val_loss=… val_nll=… val_accuracy=… lr=…`,
and the job ends with `<split> accuracy …` on the evaluation split (test, else validation). SageMaker
metric definitions are regular expressions over those lines; the algorithm specification and the
exported pipelines' estimators both take them from here.
"""

from __future__ import annotations

import re

# val_loss is the training loss (label smoothing included); val_nll the plain cross-entropy, which
# compares models trained with different label smoothing
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_nll", "val_accuracy")
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

METRIC_DEFINITIONS = (
    {"Name": "train:loss", "Regex": rf"train_loss={NUMBER}"},
    {"Name": "train:accuracy", "Regex": rf"train_accuracy={NUMBER}"},
    {"Name": "validation:loss", "Regex": rf"val_loss={NUMBER}"},
    {"Name": "validation:nll", "Regex": rf"val_nll={NUMBER}"},
    {"Name": "validation:accuracy", "Regex": rf"val_accuracy={NUMBER}"},
    {"Name": "learning_rate", "Regex": rf"epoch=\d+ .* lr={NUMBER}"},
    {"Name": "test:accuracy", "Regex": rf"test accuracy {NUMBER}"},
)

# What a hyperparameter tuner may optimise (the per-epoch validation figures). The first is the
# suite's own: on a validation split of a few dozen images the defaults already score (nearly) all
# correct, so accuracy ties and cannot rank trials, while the negative log-likelihood still tells
# a confident right answer from a lucky one.
TUNING_OBJECTIVES = (
    {"Type": "Minimize", "MetricName": "validation:nll"},
    {"Type": "Maximize", "MetricName": "validation:accuracy"},
    {"Type": "Minimize", "MetricName": "validation:loss"},
)


def metric_values(name: str, text: str) -> list[float]:
    """Every value of the metric definition `name` in log `text`, in order, as SageMaker reads
    them (the last one is what its hyperparameter tuner takes as a training job's objective)."""
    regex = next(m["Regex"] for m in METRIC_DEFINITIONS if m["Name"] == name)
    return [float(value) for value in re.findall(regex, text)]
