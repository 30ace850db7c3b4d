"""The model artifact every component exchanges: `model.safetensors` + `model.json`.

Loaders accept the folder or the `model.tar.gz` SageMaker hands to downstream steps (or a folder
holding only that tarball, as a ProcessingInput of a training job's output looks). Nothing is
unpickled; the weights must fit the architecture model.json names, exactly.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safetensors.torch import save_model

from shared.atomic import write_atomic
from shared.errors import MissingInputError
from shared.models.classifier import ImageClassifier
from shared.models.config import ModelConfig
from shared.models.factory import create_network
from shared.models.safety import UnsafeArtifactError, read_safetensors_state, safe_extract
from shared.models.weights import load_exact
from shared.versions import library_versions

WEIGHTS = "model.safetensors"
CONFIG = "model.json"
TARBALL = "model.tar.gz"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
MAX_CONFIG_BYTES = 10 * 1024 * 1024  # read whole into memory: bounded (100,000 class names fit)


def save_artifact(classifier: ImageClassifier, out_dir: Path,
                  extra: dict[str, Any] | None = None) -> Path:
    """Write weights then config into `out_dir`, each atomically; `extra` joins config.extra.

    `out_dir` is often a mount point (`/opt/ml/model`), so the files, not the folder, are replaced;
    model.json is written last, so a folder with a model.json has matching weights.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = classifier.config
    stamped = replace(config, extra={**config.extra, **(extra or {})},
                      library_versions=library_versions(),
                      created=datetime.now(UTC).isoformat(timespec="seconds"))
    (out_dir / CONFIG).unlink(missing_ok=True)
    write_atomic(out_dir / WEIGHTS, lambda tmp: save_model(classifier.network, str(tmp)))
    write_atomic(out_dir / CONFIG,
                 lambda tmp: tmp.write_text(json.dumps(stamped.to_json(), indent=2) + "\n"))
    return out_dir


def write_tarball(model_dir: Path, tarball: Path) -> Path:
    """Pack a model folder the way SageMaker does at the end of a training job."""
    def pack(tmp: Path) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(Path(model_dir).iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    tar.add(path, arcname=path.name)

    return write_atomic(tarball, pack)


def _artifact_files(folder: Path) -> tuple[Path, Path]:
    config, weights = folder / CONFIG, folder / WEIGHTS
    for path in (config, weights):
        if path.is_symlink():
            raise UnsafeArtifactError(f"{path} is a symbolic link, which is refused")
    if not weights.exists():
        pickles = sorted(p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise UnsafeArtifactError(
                f"{folder} holds {', '.join(pickles)} but no {WEIGHTS}: pickled weights are"
                " refused because loading them can run code; save the model with safetensors"
            )
        raise MissingInputError(f"{folder} is not a model artifact: no {WEIGHTS}")
    if not config.exists():
        raise MissingInputError(f"{folder} is not a model artifact: no {CONFIG}")
    return config, weights


def _read_config(path: Path) -> ModelConfig:
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise UnsafeArtifactError(f"{path} is {size:,} bytes, larger than the {MAX_CONFIG_BYTES:,}"
                                  " a model.json may be")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnsafeArtifactError(f"{path} is not valid JSON: {exc}") from None
    return ModelConfig.from_json(data, str(path))


def _artifact_path(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"model artifact {path} does not exist")
    if path.is_dir() and not (path / CONFIG).exists() and (path / TARBALL).exists():
        return path / TARBALL
    return path


def _extract(tarball: Path, into: Path, names: frozenset[str]) -> None:
    safe_extract(tarball, into, allowed=names, max_bytes={CONFIG: MAX_CONFIG_BYTES})


def load_artifact(path: Path) -> ImageClassifier:
    """Load a model from a folder, a `model.tar.gz`, or a folder holding only a `model.tar.gz`.

    The classifier is returned in eval mode on the CPU.
    """
    path = _artifact_path(path)
    if path.is_dir():
        return _load_folder(path)
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        _extract(path, Path(tmp), frozenset({CONFIG, WEIGHTS}))
        return _load_folder(Path(tmp))


def _load_folder(folder: Path) -> ImageClassifier:
    config_file, weights_file = _artifact_files(folder)
    config = _read_config(config_file)
    network = create_network(config.architecture, config.num_classes)
    load_exact(network, read_safetensors_state(weights_file),
               f"{weights_file} does not match {config.architecture} with {config.num_classes}"
               " classes")
    return ImageClassifier(network, config).eval()


def load_config(path: Path) -> ModelConfig:
    """Only the model.json of an artifact (folder or tarball), without building the model."""
    path = _artifact_path(path)
    if path.is_dir():
        return _read_config(_artifact_files(path)[0])
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        _extract(path, Path(tmp), frozenset({CONFIG}))
        if not (Path(tmp) / CONFIG).exists():
            raise MissingInputError(f"{path} holds no {CONFIG}")
        return _read_config(Path(tmp) / CONFIG)

