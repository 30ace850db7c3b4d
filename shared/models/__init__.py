"""The suite's model: `ImageClassifier` (normalisation + timm network + `ModelConfig`) and its
artifact, `model.safetensors` + `model.json`."""

from shared.models.artifact import load_artifact, load_config, save_artifact, write_tarball
from shared.models.classifier import ImageClassifier, NormalisedNetwork, default_device, top_k
from shared.models.config import ModelConfig
from shared.models.factory import (
    UnknownModelError,
    check_architecture,
    classifier_module,
    create_network,
)
from shared.models.safety import UnsafeArtifactError, read_safetensors_state, safe_extract
from shared.models.weights import load_exact, load_matching

__all__ = [
    "ImageClassifier",
    "ModelConfig",
    "NormalisedNetwork",
    "UnknownModelError",
    "UnsafeArtifactError",
    "check_architecture",
    "classifier_module",
    "create_network",
    "default_device",
    "load_artifact",
    "load_config",
    "load_exact",
    "load_matching",
    "read_safetensors_state",
    "safe_extract",
    "save_artifact",
    "top_k",
    "write_tarball",
]
