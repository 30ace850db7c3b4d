"""Opening a processing job's model and data set (explanations, evaluation), and refusing the ones
that do not fit together, with a reason to act on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.data import DatasetFormatError, ProcessedDataset
from shared.data.images import load_square_array
from shared.errors import MissingInputError
from shared.models import ImageClassifier, ModelConfig, load_artifact
from shared.sagemaker import JobError


def decode_for(config: ModelConfig, sources: list[bytes | Path]) -> np.ndarray:
    """Encoded images as the model takes them (decoded, fitted to its input size with its resize
    policy): N x size x size x 3 uint8. ImageDecodeError names what is wrong with a bad one."""
    return np.stack([load_square_array(s, config.input_size, config.resize_policy)
                     for s in sources])


def open_model(path: Path) -> ImageClassifier:
    if not path.exists():
        raise JobError(f"no model at {path}: give the job the training job's model (its"
                       " model.tar.gz or a model folder) as the 'model' input, or pass --model")
    try:
        return load_artifact(path)
    except MissingInputError as exc:
        raise JobError(f"the model input is not a model artifact: {exc}") from None


@dataclass(frozen=True)
class Inputs:
    """The data set and, per image, its true class as an index into the model's classes (-1: unknown)."""

    data: ProcessedDataset
    labels: np.ndarray

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())


def open_data(path: Path, config: ModelConfig, *, exact_classes: bool) -> Inputs:
    """Open a processed data set and check it against the model.

    `exact_classes` (train mode): the data's classes must be the model's, in order. Otherwise
    (serve mode) production data may hold only some of the model's classes; labels are mapped by
    class name.
    """
    try:
        data = ProcessedDataset(path)
    except DatasetFormatError as exc:
        splits = sorted(p.name for p in path.iterdir() if (p / "manifest.jsonl").exists()) if (
            path.is_dir()) else []
        hint = (f"; it holds the processed data sets {', '.join(splits)}: give the job one of"
                " them" if splits else "")
        raise JobError(f"{exc}{hint}") from None
    if len(data) == 0:
        raise JobError(f"the data set {path} holds no images")
    size = config.input_size
    if data.image_shape != (size, size, 3):
        h, w = data.image_shape[:2]
        raise JobError(f"the images in {path} are {h}x{w} but the model takes {size}x{size}:"
                       f" process the data with --image-size {size}")
    return Inputs(data, _model_labels(data, config, exact_classes))


def _model_labels(data: ProcessedDataset, config: ModelConfig, exact_classes: bool) -> np.ndarray:
    labels = data.labels
    if data.classes is None:
        return np.full(len(data), -1, dtype=np.int64)
    if exact_classes and data.classes != config.class_names:
        raise JobError(f"the data's classes {data.classes} are not the model's"
                       f" {config.class_names}: give data processed for this model")
    unknown = [c for c in data.classes if c not in config.class_names]
    if unknown:
        raise JobError(f"the data has classes the model does not know: {unknown} (the model's"
                       f" classes are {config.class_names})")
    to_model = np.array([config.class_names.index(c) for c in data.classes], dtype=np.int64)
    return np.where(labels >= 0, to_model[np.maximum(labels, 0)], -1)
