"""timm models and the safetensors model artifact."""

from shared.models.artifact import (
    ModelConfig,
    load_artifact,
    load_config,
    save_artifact,
    write_tarball,
)
from shared.models.factory import (
    Normalise,
    UnknownModelError,
    check_architecture,
    classifier_module,
    create_model,
    normalisation,
)
from shared.models.safety import UnsafeArtifactError, read_safetensors_state, safe_extract

__all__ = [
    "ModelConfig",
    "Normalise",
    "UnknownModelError",
    "UnsafeArtifactError",
    "check_architecture",
    "classifier_module",
    "create_model",
    "load_artifact",
    "load_config",
    "normalisation",
    "read_safetensors_state",
    "safe_extract",
    "save_artifact",
    "write_tarball",
]
