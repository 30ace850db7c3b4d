"""The model that pre-labels tasks: a model folder (or model.tar.gz, or a registry version) with
the name of its version, which Label Studio stores with each prediction."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from shared.model_inputs import decode_for, open_model
from shared.models import ImageClassifier
from shared.models.artifact import load_config


def model_version(path: Path) -> str:
    """`<name>-v<N>` for a registry version's model (`<registry>/<name>/v<N>/model`), otherwise
    the artifact's name and a digest of its files: stable for the same model, so Label Studio
    does not ask again for tasks it already holds this version's predictions of."""
    path = Path(path).resolve()
    version = path.parent if path.name == "model" else path
    if version.name[1:].isdigit() and version.name.startswith("v"):
        return f"{version.parent.name}-{version.name}"
    digest = hashlib.sha256(path.read_bytes() if path.is_file() else b"".join(
        p.read_bytes() for p in sorted(path.glob("model.*")) if p.is_file())).hexdigest()[:12]
    return f"{path.name}-{digest}"


@dataclass
class LabellingModel:
    path: Path

    @cached_property
    def classes(self) -> list[str]:
        return list(load_config(self.path).class_names)

    @cached_property
    def version(self) -> str:
        return model_version(self.path)

    @cached_property
    def classifier(self) -> ImageClassifier:
        return open_model(self.path).place("cpu")

    def predict(self, images: list[bytes]) -> list[tuple[str, float]]:
        """(most probable class, its probability) per encoded image; decode errors propagate."""
        probabilities = self.classifier.probabilities(decode_for(self.classifier.config, images))
        best = probabilities.argmax(axis=1)
        return [(self.classes[i], float(p[i])) for i, p in zip(best, probabilities, strict=True)]
