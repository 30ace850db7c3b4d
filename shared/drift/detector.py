"""The drift detector the components use: fit a reference, test a batch, save, load.

An MMD two-sample test on encoded images, as alibi-detect's `MMDDrift` does it: the encoder reduces
each image to a short vector, the Gaussian kernel's bandwidth comes from the reference, and a
permutation test gives the p-value. The bandwidth (alibi-detect's median rule) and the test run in
`shared.drift.mmd` (same statistic, all permutations in one pass).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.drift.encoders import Encoder, EncoderFormatError, build_encoder
from shared.drift.mmd import MMDResult, median_bandwidth, permutation_test
from shared.drift.storage import DetectorConfig, DetectorFormatError, read_detector, write_detector


@dataclass(frozen=True)
class DriftResult:
    """A test's verdict and figures; `null` (the permuted MMD² values) is for plots, not JSON."""

    drift: bool
    p_value: float
    distance: float
    threshold: float
    n_reference: int
    n_test: int
    null: np.ndarray

    @classmethod
    def from_mmd(cls, result: MMDResult, p_value: float) -> DriftResult:
        # alibi-detect's rule: drift when the p-value is below the configured one
        return cls(result.p_value < p_value, result.p_value, result.distance, result.threshold,
                   result.n_reference, result.n_test, result.null)

    def to_json(self) -> dict[str, Any]:
        return {"drift": bool(self.drift), "p_value": self.p_value, "distance": self.distance,
                "threshold": self.threshold, "n_reference": self.n_reference, "n_test": self.n_test}


@dataclass(frozen=True)
class Window:
    """Consecutive test samples [start, end) and their own test."""

    index: int
    start: int
    end: int
    result: DriftResult


def reference_sample(count: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a reproducible random subsample of `size` out of `count` (all if fewer).

    The MMD test costs grow with the square of the reference size, so a large training set is
    subsampled; the same seed picks the same images every time.
    """
    if count <= size:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False))


def windows(count: int, size: int) -> list[tuple[int, int]]:
    """[start, end) of consecutive windows of `size`; a last, shorter window is kept if it can be
    tested (2 samples or more), so no image goes untested."""
    if size < 2:
        raise ValueError("a window must hold at least 2 images")
    bounds = [(start, min(start + size, count)) for start in range(0, count, size)]
    return [(a, b) for a, b in bounds if b - a >= 2]


def all_finite(features: np.ndarray, rows: int = 4096) -> bool:
    """No NaN or infinity, checked a block of rows at a time: `features` may be a memory map of
    more rows than memory holds."""
    return all(np.isfinite(features[start:start + rows]).all()
               for start in range(0, len(features), rows))


class DriftDetector:
    """An encoder, the reference features, and the test settings."""

    def __init__(self, encoder: Encoder, reference: np.ndarray, config: DetectorConfig) -> None:
        self.encoder = encoder
        self.reference = np.ascontiguousarray(reference, dtype=np.float32)
        self.config = config

    @classmethod
    def fit(cls, encoder: Encoder, images: np.ndarray, **settings: Any) -> DriftDetector:
        """Adapt the encoder to the reference images (N x S x S x 3 uint8; see `Encoder.adapt`),
        encode them and fit; see `from_features`."""
        encoder.adapt(images)
        return cls.from_features(encoder, encoder.encode(images), **settings)

    @classmethod
    def from_features(cls, encoder: Encoder, features: np.ndarray, *, p_value: float = 0.05,
                      permutations: int = 100, seed: int = 0,
                      reference_info: dict[str, Any] | None = None) -> DriftDetector:
        """Fit on encoded reference features: infer the kernel bandwidth as alibi-detect does."""
        if not 0 < p_value < 1:
            raise ValueError(f"p_value {p_value} must be between 0 and 1")
        if permutations < 1:
            raise ValueError("permutations must be at least 1")
        if len(features) < 2:
            raise ValueError(f"the reference needs at least 2 images, got {len(features)}")
        if not all_finite(features):
            raise ValueError("the reference features hold NaN or infinite values")
        reference = np.ascontiguousarray(features, dtype=np.float32)
        config = DetectorConfig(encoder.spec, median_bandwidth(reference), float(p_value),
                                int(permutations), int(seed), len(reference),
                                dict(reference_info or {}))
        config = replace(config, detector_id=config.identity())
        return cls(encoder, reference, config)

    @property
    def image_size(self) -> int:
        return self.encoder.image_size

    @property
    def resize_policy(self) -> str:
        return self.encoder.spec.resize_policy

    def identity(self) -> dict[str, Any]:
        """What a report says about the detector it used."""
        c = self.config
        return {"detector_id": c.detector_id, "created": c.created, "format_version": c.format_version,
                "encoder": c.encoder.kind, "architecture": c.encoder.architecture,
                "image_size": c.encoder.image_size, "feature_dim": c.encoder.feature_dim,
                "sigma": c.sigma, "p_value": c.p_value, "permutations": c.permutations,
                "seed": c.seed, "library_versions": c.library_versions}

    @property
    def feature_dim(self) -> int:
        return self.encoder.spec.feature_dim

    def features(self, images: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """N x feature_dim float32, into `out` (e.g. a memory map) when given."""
        return self.encoder.encode(images, out=out)

    def test(self, images: np.ndarray) -> DriftResult:
        return self.test_features(self.features(images))

    def test_features(self, features: np.ndarray, max_samples: int | None = None) -> DriftResult:
        """The test of `features` against the reference; beyond `max_samples` rows, of a seeded
        sample of that many: the test's cost grows with the square of its samples, and past a few
        times the reference size more test samples add little power (n_test says how many)."""
        if not all_finite(features):
            raise ValueError("the test features hold NaN or infinite values")
        c = self.config
        if max_samples is not None and len(features) > max_samples:
            features = features[reference_sample(len(features), max_samples, c.seed)]
        result = permutation_test(self.reference, features, c.sigma, permutations=c.permutations,
                                  p_value=c.p_value, seed=c.seed, device=self.encoder.device)
        return DriftResult.from_mmd(result, c.p_value)

    def test_windows(self, features: np.ndarray, size: int) -> list[Window]:
        """Test consecutive windows of `size` samples separately, to locate where a shift starts."""
        return [Window(i, a, b, self.test_features(features[a:b]))
                for i, (a, b) in enumerate(windows(len(features), size))]

    def save(self, folder: Path) -> Path:
        self.config = write_detector(folder, self.config, self.encoder.state_dict(), self.reference)
        return Path(folder)

    @classmethod
    def load(cls, folder: Path, device: str | torch.device = "cpu") -> DriftDetector:
        config, weights, reference = read_detector(folder)
        try:
            encoder = build_encoder(config.encoder, weights, device)
        except EncoderFormatError as exc:
            raise DetectorFormatError(f"{folder}: {exc}") from None
        return cls(encoder, reference, config)
