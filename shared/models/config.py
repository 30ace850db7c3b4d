"""`model.json`: what a consumer needs to use the weights, declared once with its rules.

    architecture     timm name                   class_names   in index order, unique
    input_size       side of the square input    mean, std     per channel, on the 0..1 scale
    resize_policy    how images were fitted to the square before training (crop or pad;
                     absent in files written before it existed: crop, as they were)
    library_versions, created, format_version, extra (hyperparameters, evaluation)

A model.json comes from outside (a model.tar.gz anyone can hand a job), so `from_json` checks every
field's type and rule (`shared.schema`) before anything is built from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import schema
from shared.choices import RESIZE_POLICIES
from shared.models.safety import UnsafeArtifactError
from shared.schema import setting

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = setting(help="timm architecture", min_length=1)
    class_names: list[str] = setting(help="class names in index order", min_length=1, unique=True)
    input_size: int = setting(help="side of the square input", min=1, max=4096)
    mean: list[float] = setting(help="per-channel mean, 0..1 scale", length=3)
    std: list[float] = setting(help="per-channel std, 0..1 scale", length=3, above=0)
    resize_policy: str = setting("crop", help="how images were fitted to the square",
                                 choices=RESIZE_POLICIES)
    library_versions: dict[str, str] = setting(default_factory=dict)
    created: str = setting("")
    format_version: int = setting(FORMAT_VERSION, choices=(FORMAT_VERSION,))
    extra: dict[str, Any] = setting(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> dict[str, Any]:
        return {**schema.to_json(self), "num_classes": self.num_classes}

    @classmethod
    def from_json(cls, data: Any, source: str = "model.json") -> ModelConfig:
        """Validate strictly: a model.json is input from outside, not trusted."""
        if isinstance(data, dict) and data.get("format_version") != FORMAT_VERSION:
            raise UnsafeArtifactError(f"{source}: format_version {data.get('format_version')!r}"
                                      f" is not {FORMAT_VERSION}")
        try:
            config = schema.from_json(cls, data, source)
        except schema.SchemaError as exc:
            raise UnsafeArtifactError(str(exc)) from None
        if "num_classes" in data and data["num_classes"] != config.num_classes:
            raise UnsafeArtifactError(f"{source}: num_classes {data['num_classes']!r} does not match"
                                      f" {config.num_classes} class names")
        return config


schema.check_defaults(ModelConfig)
