"""The detector folder: what train mode writes and serve mode reads, with nothing pickled.

    detector.json          format version, encoder spec, test settings, bandwidth, library versions,
                           and the sha256 of each file below
    encoder.safetensors    the encoder network's weights
    reference.npy          the reference features, float32 n_reference x feature_dim

The folder is written under a hidden name and renamed into place when whole. detector.json carries
a format version, so a detector from an incompatible release is refused with a clear message rather
than misread, and the file hashes catch a folder that was altered or copied only in part.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from shared import schema
from shared.atomic import published_folder
from shared.drift.encoders import EncoderSpec
from shared.errors import UserError
from shared.models import UnsafeArtifactError, read_safetensors_state
from shared.schema import setting
from shared.versions import library_versions

FORMAT_VERSION = 1
CONFIG = "detector.json"
WEIGHTS = "encoder.safetensors"
REFERENCE = "reference.npy"
DETECTOR_KIND = "mmd"
MAX_CONFIG_BYTES = 10 * 1024 * 1024  # read whole into memory: bounded, as model.json is


class DetectorFormatError(UserError):
    """A detector folder that cannot be used: missing, incomplete, altered or from another version."""


@dataclass(frozen=True)
class DetectorConfig:
    """detector.json: how the detector was made and how to test with it."""

    encoder: EncoderSpec = setting()
    sigma: list[float] = setting(min_length=1, above=0,
                                 help="Gaussian kernel bandwidth(s), inferred from the reference")
    p_value: float = setting(above=0, below=1)
    permutations: int = setting(min=1)
    seed: int = setting(min=0)
    n_reference: int = setting(min=2)
    reference: dict[str, Any] = setting(default_factory=dict, help="where the reference came from")
    library_versions: dict[str, str] = setting(default_factory=dict)
    created: str = setting("")
    files: dict[str, str] = setting(default_factory=dict, help="file name -> sha256")
    detector_id: str = setting("")
    format_version: int = setting(FORMAT_VERSION, choices=(FORMAT_VERSION,))

    def to_json(self) -> dict[str, Any]:
        data = schema.to_json(self)
        return {"format_version": self.format_version, "kind": DETECTOR_KIND,
                "detector_id": self.detector_id,
                **{k: v for k, v in data.items() if k not in ("format_version", "detector_id")},
                "test": {"statistic": "unbiased MMD² (alibi-detect MMDDrift)",
                         "kernel": "Gaussian RBF (alibi-detect GaussianRBF)",
                         "bandwidth": "median heuristic on the reference features"}}

    def identity(self) -> str:
        """A content hash: the same data and settings give the same id, whenever they were fitted."""
        data = self.to_json()
        for volatile in ("detector_id", "created", "library_versions"):
            data.pop(volatile)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, data: Any) -> DetectorConfig:
        if not isinstance(data, dict):
            raise DetectorFormatError(f"{CONFIG} must hold a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise DetectorFormatError(
                f"{CONFIG} has format_version {version!r}, but this monitoring release reads only"
                f" version {FORMAT_VERSION}: the detector was written by an incompatible release;"
                " run monitoring train again with this release")
        if data.get("kind") != DETECTOR_KIND:
            raise DetectorFormatError(f"{CONFIG} describes a {data.get('kind')!r} detector, not MMD")
        try:
            return schema.from_json(cls, data, CONFIG)
        except schema.SchemaError as exc:
            raise DetectorFormatError(str(exc)) from None


schema.check_defaults(DetectorConfig)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_detector(folder: Path, config: DetectorConfig, weights: dict[str, torch.Tensor],
                   reference: np.ndarray) -> DetectorConfig:
    """Write the folder under a hidden name, then rename it into place; returns the stamped config."""
    with published_folder(Path(folder)) as staged:
        save_file(weights, str(staged / WEIGHTS))
        np.save(staged / REFERENCE, np.ascontiguousarray(reference, dtype=np.float32),
                allow_pickle=False)
        stamped = replace(config, files={name: _sha256(staged / name) for name in (WEIGHTS, REFERENCE)},
                          library_versions=library_versions(),
                          created=datetime.now(UTC).isoformat(timespec="seconds"))
        stamped = replace(stamped, detector_id=stamped.identity())
        (staged / CONFIG).write_text(json.dumps(stamped.to_json(), indent=2) + "\n")
    return stamped


def read_detector(folder: Path) -> tuple[DetectorConfig, dict[str, torch.Tensor], np.ndarray]:
    """Read and check a detector folder: config, encoder weights and reference features."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DetectorFormatError(f"detector folder {folder} does not exist: give serve mode the"
                                  " folder monitoring train wrote (processing/output/detector)")
    config_file = folder / CONFIG
    if not config_file.is_file():
        raise DetectorFormatError(f"{folder} is not a drift detector: it has no {CONFIG}")
    size = config_file.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise DetectorFormatError(f"{config_file} is {size:,} bytes, larger than the"
                                  f" {MAX_CONFIG_BYTES:,} a {CONFIG} may be")
    try:
        data = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DetectorFormatError(f"{config_file} is not valid JSON: {exc}") from None
    config = DetectorConfig.from_json(data)
    for name in (WEIGHTS, REFERENCE):
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise DetectorFormatError(f"{folder} is incomplete: {name} is missing")
        if config.files.get(name) != _sha256(path):
            raise DetectorFormatError(f"{folder}/{name} does not match the hash in {CONFIG}: the"
                                      " folder was altered or mixes files from two detectors")
    if config.detector_id != config.identity():
        raise DetectorFormatError(f"{config_file} was edited after it was written (its detector_id"
                                  " no longer matches its content)")
    try:
        weights = read_safetensors_state(folder / WEIGHTS)
    except UnsafeArtifactError as exc:
        raise DetectorFormatError(str(exc)) from None
    try:
        reference = np.load(folder / REFERENCE, allow_pickle=False)
    except ValueError as exc:
        raise DetectorFormatError(f"{folder}/{REFERENCE} is not a plain .npy array: {exc}") from None
    expected = (config.n_reference, config.encoder.feature_dim)
    if reference.dtype != np.float32 or reference.shape != expected:
        raise DetectorFormatError(f"{folder}/{REFERENCE} holds {reference.dtype} {reference.shape},"
                                  f" expected float32 {expected}")
    return config, weights, reference
