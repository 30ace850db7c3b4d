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

from explainability.inputs import Inputs
from shared.attribution import (
    COMPLETENESS_TOLERANCE,
    Attributions,
    ClassMeanMaps,
    Explainer,
    NpzWriter,
    attribution_key,
)
from shared.sagemaker import GracefulStop, JobInterrupted

log = logging.getLogger(__name__)
BLOCKS_PER_LOG = 10


@dataclass
class Explained:
    """What the loop produced: one summary record per image, and class means when asked for."""

    records: list[dict[str, Any]] = field(default_factory=list)
    class_means: ClassMeanMaps | None = None


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _check(a: Attributions, row: int) -> dict[str, Any]:
    return {
        "delta": float(a.delta[row]),
        "relative_error": float(a.relative_error[row]),
        "completeness_ok": bool(a.completeness_ok[row]),
        "output": float(a.output[row]),
        "baseline_output": float(a.baseline_output[row]),
    }


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
            image_id = data.records[i]["id"]
            record: dict[str, Any] = {"id": image_id, "key": attribution_key(image_id)}
            if labels[j] >= 0:
                record["label"] = names[labels[j]]
            record["prediction"] = names[predicted[j]]
            record["probability"] = float(probabilities[j, predicted[j]])
            if labels[j] >= 0:
                record["correct"] = bool(labels[j] == predicted[j])
            record.update(_check(a, j))
            store.add(record["key"], a.values[j])
            if class_means is not None and labels[j] in (-1, predicted[j]):
                class_means.add(int(predicted[j]), a.values[j], images[j])
            result.records.append(record)
        for k, j in enumerate(wrong):
            row = len(idx) + k
            record = result.records[start + j]
            true_key = attribution_key(record["id"], true_class=True)
            store.add(true_key, a.values[row])
            record["true_class"] = {"key": true_key, "probability":
                                    float(probabilities[j, labels[j]]), **_check(a, row)}
        if number % BLOCKS_PER_LOG == 0 or start + block >= len(indices):
            done = min(start + block, len(indices))
            seconds = time.monotonic() - started
            log.info("explained %d/%d images (%.3f s/image)", done, len(indices), seconds / done)
    failed = [r["id"] for r in result.records if not r["completeness_ok"]]
    if failed:
        log.warning("%d images miss completeness by more than %.0f%% (e.g. %s): raise --n-steps",
                    len(failed), 100 * COMPLETENESS_TOLERANCE, failed[0])
    return result
