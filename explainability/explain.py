"""The loop both modes share: predict, attribute, store, one block of images at a time.

A block is predicted first, so the targets are known: the predicted class for every image, plus
the true class for each labelled image the model got wrong ("why not the right answer?"). All of
a block's rows then go through integrated gradients together, in internal batches.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.attribution import (
    COMPLETENESS_TOLERANCE,
    Attributions,
    ClassMeanMaps,
    Explainer,
    IGSettings,
    NpzWriter,
    attribution_key,
)
from shared.model_inputs import Inputs
from shared.sagemaker import GracefulStop, JobInterrupted

log = logging.getLogger(__name__)
BLOCKS_PER_LOG = 10


@dataclass(frozen=True)
class Completeness:
    """How well one row's attributions add up to the change of the explained logit."""

    delta: float
    relative_error: float
    completeness_ok: bool
    output: float
    baseline_output: float
    steps: int  # integration points it took (adaptive: the grid it stopped on)

    @classmethod
    def of(cls, a: Attributions, row: int) -> Completeness:
        return cls(float(a.delta[row]), float(a.relative_error[row]), bool(a.completeness_ok[row]),
                   float(a.output[row]), float(a.baseline_output[row]), int(a.steps[row]))

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TrueClass:
    """A misclassified image's attributions for its true class ("why not the right answer?")."""

    key: str
    probability: float
    check: Completeness

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "probability": self.probability, **self.check.to_json()}


@dataclass
class ImageExplanation:
    """One image's line in summary.json."""

    id: str
    key: str
    prediction: str
    probability: float
    check: Completeness
    label: str | None = None  # None: unlabelled
    true_class: TrueClass | None = None
    overlay: str | None = None  # its heatmap PNG, when the gallery drew it

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.label == self.prediction

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "key": self.key}
        if self.label is not None:
            data["label"] = self.label
        data.update(prediction=self.prediction, probability=self.probability)
        if self.label is not None:
            data["correct"] = self.correct
        data.update(self.check.to_json())
        if self.true_class is not None:
            data["true_class"] = self.true_class.to_json()
        if self.overlay is not None:
            data["overlay"] = self.overlay
        return data


@dataclass
class Explained:
    """What the loop produced: one record per image, and class means when asked for."""

    records: list[ImageExplanation] = field(default_factory=list)
    class_means: ClassMeanMaps | None = None


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def explain_images(explainer: Explainer, inputs: Inputs, indices: np.ndarray, store: NpzWriter,
                   class_means: ClassMeanMaps | None, stop: GracefulStop) -> Explained:
    """Explain `indices` of the data set; attributions go to `store`, records are returned."""
    names = explainer.config.class_names
    data = inputs.data
    block = max(16, 8 * explainer.rows_per_call())
    result = Explained(class_means=class_means)
    started = time.monotonic()
    for number, start in enumerate(range(0, len(indices), block)):
        if stop.requested:
            raise JobInterrupted(f"stopped after {start} of {len(indices)} images; nothing was"
                                 " written (explanations are published only when complete)")
        idx = indices[start:start + block]
        images = data.images(idx)
        logits = explainer.predict_logits(images)
        probabilities = softmax(logits)
        predicted = probabilities.argmax(axis=1)
        labels = inputs.labels[idx]
        wrong = np.flatnonzero((labels >= 0) & (labels != predicted))
        rows = np.concatenate([np.arange(len(idx)), wrong])
        targets = np.concatenate([predicted, labels[wrong]])
        a = explainer.attribute(images[rows], targets, idx[rows], logits[rows])
        for j, i in enumerate(idx):
            image_id = data.records[i].id
            record = ImageExplanation(image_id, attribution_key(image_id), names[predicted[j]],
                                      float(probabilities[j, predicted[j]]), Completeness.of(a, j),
                                      names[labels[j]] if labels[j] >= 0 else None)
            store.add(record.key, a.values[j])
            if class_means is not None and labels[j] in (-1, predicted[j]):
                class_means.add(int(predicted[j]), a.values[j], images[j])
            result.records.append(record)
        for k, j in enumerate(wrong):
            row = len(idx) + k
            record = result.records[start + j]
            record.true_class = TrueClass(attribution_key(record.id, true_class=True),
                                          float(probabilities[j, labels[j]]), Completeness.of(a, row))
            store.add(record.true_class.key, a.values[row])
        if number % BLOCKS_PER_LOG == 0 or start + block >= len(indices):
            done = min(start + block, len(indices))
            seconds = time.monotonic() - started
            log.info("explained %d/%d images (%.3f s/image)", done, len(indices), seconds / done)
    warn_incomplete(result.records, explainer.settings)
    return result


def warn_incomplete(records: list[ImageExplanation], settings: IGSettings) -> None:
    """Log the images whose attributions miss completeness, and which flag would help."""
    failed = [r for r in records if not r.check.completeness_ok]
    if not failed:
        return
    if settings.adaptive:  # adaptive steps stop early only when completeness holds
        log.warning("%d images reached the step cap (%d steps) and still miss completeness by"
                    " more than %.0f%% (e.g. %s): raise --max-steps", len(failed),
                    failed[0].check.steps, 100 * COMPLETENESS_TOLERANCE, failed[0].id)
    else:
        log.warning("%d images miss completeness by more than %.0f%% (e.g. %s): raise --n-steps"
                    " or use --n-steps auto", len(failed), 100 * COMPLETENESS_TOLERANCE,
                    failed[0].id)
