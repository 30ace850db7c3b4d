"""Evaluating a trained model: SageMaker's multiclass model-quality JSON and a confusion-matrix PNG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, fbeta_score, precision_recall_fscore_support

from shared.data import ProcessedDataset
from shared.models import ImageClassifier
from shared.plotting import pyplot, save_figure


def predict(classifier: ImageClassifier, data: ProcessedDataset, batch_size: int = 256,
            change: Callable[[np.ndarray, int], np.ndarray] | None = None) -> np.ndarray:
    """Class probabilities for every image of a processed data set, read a batch at a time;
    `change(images, first row)` alters each batch first (the evaluation's corruptions)."""
    def batch(start: int) -> np.ndarray:
        images = data.images(range(start, min(start + batch_size, len(data))))
        return classifier.probabilities(change(images, start) if change else images, batch_size)

    parts = [batch(start) for start in range(0, len(data), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, classifier.config.num_classes),
                                                        np.float32)


def _metric(value: float) -> dict[str, Any]:
    return {"value": float(value), "standard_deviation": "NaN"}


def multiclass_report(labels: np.ndarray, predicted: np.ndarray,
                      class_names: list[str]) -> dict[str, Any]:
    """The layout of SageMaker Model Monitor's multiclass model-quality metrics, plus per class."""
    indices = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=indices, zero_division=0)
    weighted = precision_recall_fscore_support(labels, predicted, labels=indices,
                                               average="weighted", zero_division=0)
    matrix = confusion_matrix(labels, predicted, labels=indices)
    majority = np.bincount(labels, minlength=len(class_names)).max() / max(1, len(labels))
    return {
        "multiclass_classification_metrics": {
            "accuracy": _metric(accuracy_score(labels, predicted)),
            "weighted_precision": _metric(weighted[0]),
            "weighted_recall": _metric(weighted[1]),
            "weighted_f1": _metric(weighted[2]),
            "weighted_f0_5": _metric(fbeta_score(labels, predicted, beta=0.5, labels=indices,
                                                 average="weighted", zero_division=0)),
            "weighted_f2": _metric(fbeta_score(labels, predicted, beta=2, labels=indices,
                                               average="weighted", zero_division=0)),
            "accuracy_best_constant_classifier": _metric(majority),
            "confusion_matrix": {
                actual: {pred: int(matrix[i, j]) for j, pred in enumerate(class_names)}
                for i, actual in enumerate(class_names)
            },
            "per_class": {
                name: {"precision": float(precision[i]), "recall": float(recall[i]),
                       "f1": float(f1[i]), "support": int(support[i])}
                for i, name in enumerate(class_names)
            },
        }
    }


def plot_confusion_matrix(report: dict[str, Any], path: Path, title: str) -> None:
    plt = pyplot()
    cm = report["multiclass_classification_metrics"]["confusion_matrix"]
    names = list(cm)
    matrix = np.array([[cm[a][p] for p in names] for a in names])
    size = max(4.0, 0.5 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=90 if len(names) > 10 else 0)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if matrix[i, j] > threshold else "black")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
