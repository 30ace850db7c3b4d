"""Attribution maps: per-pixel summaries of H x W x 3 attributions, and per-class means of them.

A map sums the three colour channels (a pixel matters, whatever its colour). Per-class means are
the reference that production explanations are compared against, so each image's map is first
divided by its total absolute attribution: every image then weighs the same, whatever its logit
scale, and a mean map reads as "the share of the evidence that comes from here".
"""

from __future__ import annotations

import numpy as np


def attribution_map(values: np.ndarray) -> np.ndarray:
    """H x W x 3 -> H x W signed map (channel sum)."""
    return np.asarray(values, dtype=np.float32).sum(axis=-1)


def normalised_map(values: np.ndarray) -> np.ndarray:
    """Channel-summed map scaled so its absolute values sum to one (all zeros stays zeros)."""
    m = attribution_map(values)
    total = float(np.abs(m).sum())
    return m / total if total > 0 else m


def mass_fraction(values: np.ndarray, mask: np.ndarray) -> float:
    """Share of the total absolute attribution (summed over channels) that falls inside `mask`."""
    m = np.abs(attribution_map(values))
    total = float(m.sum())
    return float(m[mask].sum()) / total if total > 0 else 0.0


class ClassMeanMaps:
    """Running per-class means of normalised maps (and of the images, for showing them beside)."""

    def __init__(self, class_names: list[str], height: int, width: int) -> None:
        self.class_names = class_names
        self.sums = np.zeros((len(class_names), height, width), np.float64)
        self.image_sums = np.zeros((len(class_names), height, width, 3), np.float64)
        self.counts = np.zeros(len(class_names), np.int64)

    def add(self, class_index: int, values: np.ndarray, image: np.ndarray) -> None:
        self.sums[class_index] += normalised_map(values)
        self.image_sums[class_index] += image
        self.counts[class_index] += 1

    def means(self) -> np.ndarray:
        """classes x H x W; a class with no images is all zeros."""
        return self.sums / np.maximum(self.counts, 1)[:, None, None]

    def mean_images(self) -> np.ndarray:
        """classes x H x W x 3 uint8: the average picture behind each mean map."""
        mean = self.image_sums / np.maximum(self.counts, 1)[:, None, None, None]
        return np.clip(np.rint(mean), 0, 255).astype(np.uint8)
