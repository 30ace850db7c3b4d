"""The model artifact every component exchanges: `model.safetensors` + `model.json`.

Loaders accept the folder or the `model.tar.gz` SageMaker hands to downstream steps (or a folder
holding only that tarball, as a ProcessingInput of a training job's output looks).
"""

from __future__ import annotations

import json
import math
import os
import tarfile
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from safetensors.torch import save_model
from torch import nn

from shared.models.factory import create_model
from shared.models.safety import UnsafeArtifactError, read_safetensors_state, safe_extract

WEIGHTS = "model.safetensors"
CONFIG = "model.json"
TARBALL = "model.tar.gz"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
MAX_CONFIG_BYTES = 10 * 1024 * 1024  # read whole into memory: bounded (100,000 class names fit)


@dataclass(frozen=True)
class ModelConfig:
    """What a consumer needs to use the weights: architecture, classes, input size, normalisation."""

    architecture: str
    class_names: list[str]
    input_size: int
    mean: list[float]
    std: list[float]
    library_versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "num_classes": self.num_classes}

    @classmethod
    def from_json(cls, data: Any, source: str = CONFIG) -> ModelConfig:
        """Validate types strictly: a model.json is input from outside, not trusted."""
        def fail(why: str) -> UnsafeArtifactError:
            return UnsafeArtifactError(f"{source}: {why}")

        if not isinstance(data, dict):
            raise fail("expected a JSON object")
        if data.get("format_version") != FORMAT_VERSION:
            raise fail(f"format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
        arch, names, size = data.get("architecture"), data.get("class_names"), data.get("input_size")
        mean, std = data.get("mean"), data.get("std")
        if not isinstance(arch, str) or not arch:
            raise fail("architecture must be a non-empty string")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise fail("class_names must be a non-empty list of strings")
        if len(set(names)) != len(names):
            raise fail("class_names has duplicates")
        if "num_classes" in data and data["num_classes"] != len(names):
            raise fail(f"num_classes {data['num_classes']!r} does not match {len(names)} class names")
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 4096:
            raise fail("input_size must be an integer between 1 and 4096")
        for key, values in (("mean", mean), ("std", std)):
            if not (isinstance(values, list) and len(values) == 3
                    and all(isinstance(v, int | float) and not isinstance(v, bool)
                            and math.isfinite(v) for v in values)):  # json reads NaN, Infinity
                raise fail(f"{key} must be a list of 3 finite numbers")
        if any(v <= 0 for v in std):
            raise fail("std values must be positive")
        versions = data.get("library_versions", {})
        extra = data.get("extra", {})
        if not isinstance(versions, dict) or not isinstance(extra, dict):
            raise fail("library_versions and extra must be objects")
        return cls(arch, list(names), size, [float(v) for v in mean], [float(v) for v in std],
                   {str(k): str(v) for k, v in versions.items()}, str(data.get("created", "")),
                   FORMAT_VERSION, extra)


def library_versions() -> dict[str, str]:
    versions = {}
    for dist in ("torch", "timm", "safetensors", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _replace_file(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_artifact(model: nn.Module, config: ModelConfig, out_dir: Path) -> Path:
    """Write weights then config into `out_dir`, each atomically.

    `out_dir` is often a mount point (`/opt/ml/model`), so the files, not the folder, are replaced;
    model.json is written last, so a folder with a model.json has matching weights.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamped = ModelConfig(**{**asdict(config), "library_versions": library_versions(),
                             "created": datetime.now(UTC).isoformat(timespec="seconds")})
    (out_dir / CONFIG).unlink(missing_ok=True)
    _replace_file(out_dir / WEIGHTS, lambda tmp: save_model(model, str(tmp)))
    _replace_file(out_dir / CONFIG,
                  lambda tmp: tmp.write_text(json.dumps(stamped.to_json(), indent=2) + "\n"))
    return out_dir


def write_tarball(model_dir: Path, tarball: Path) -> Path:
    """Pack a model folder the way SageMaker does at the end of a training job."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    tmp = tarball.with_name(f".{tarball.name}.{uuid.uuid4().hex}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(Path(model_dir).iterdir()):
            if path.is_file() and not path.name.startswith("."):
                tar.add(path, arcname=path.name)
    os.replace(tmp, tarball)
    return tarball


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
        raise FileNotFoundError(f"{folder} is not a model artifact: no {WEIGHTS}")
    if not config.exists():
        raise FileNotFoundError(f"{folder} is not a model artifact: no {CONFIG}")
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


def load_artifact(path: Path) -> tuple[nn.Module, ModelConfig]:
    """Load a model from a folder, a `model.tar.gz`, or a folder holding only a `model.tar.gz`.

    The model is returned in eval mode on the CPU.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model artifact {path} does not exist")
    if path.is_dir() and not (path / CONFIG).exists() and (path / TARBALL).exists():
        path = path / TARBALL
    if path.is_dir():
        return _load_folder(path)
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        safe_extract(path, Path(tmp), allowed=frozenset({CONFIG, WEIGHTS}))
        return _load_folder(Path(tmp))


def _load_folder(folder: Path) -> tuple[nn.Module, ModelConfig]:
    config_file, weights_file = _artifact_files(folder)
    config = _read_config(config_file)
    state = read_safetensors_state(weights_file)
    model = create_model(config.architecture, config.num_classes)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    got = {k: v.shape for k, v in state.items()}
    if expected != got:
        wrong = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
        raise UnsafeArtifactError(
            f"{weights_file} does not match {config.architecture} with {config.num_classes}"
            f" classes (missing {len(expected.keys() - got.keys())} tensors, unexpected"
            f" {len(got.keys() - expected.keys())}, wrong shape {len(wrong)})"
        )
    model.load_state_dict(state, strict=True)
    return model.eval(), config


def load_config(path: Path) -> ModelConfig:
    """Only the model.json of an artifact (folder or tarball), without building the model."""
    path = Path(path)
    if path.is_dir() and not (path / CONFIG).exists() and (path / TARBALL).exists():
        path = path / TARBALL
    if path.is_dir():
        return _read_config(_artifact_files(path)[0])
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        safe_extract(path, Path(tmp), allowed=frozenset({CONFIG}))
        if not (Path(tmp) / CONFIG).exists():
            raise FileNotFoundError(f"{path} holds no {CONFIG}")
        return _read_config(Path(tmp) / CONFIG)
