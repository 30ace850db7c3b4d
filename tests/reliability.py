"""Helpers the reliability tests share: one recorded seed, a tiny model, a small processed data set.

Every random choice in those tests comes from `seeded(name)`: the run's seed is printed (pytest shows
it with a failure) and `RELIABILITY_SEED=<n>` replays a run exactly.
"""

from __future__ import annotations

import os
import random
import zlib
from pathlib import Path

import numpy as np

SEED = int(os.environ.get("RELIABILITY_SEED", "20251"))
TINY_ARCHITECTURE = "test_resnet"  # timm's own test network: 0.4 M parameters, fast on a CPU


def seeded(name: str) -> random.Random:
    """A generator for one test, derived from the run's seed and the test's name."""
    seed = SEED ^ zlib.crc32(name.encode())
    print(f"reliability seed: RELIABILITY_SEED={SEED} ({name}: {seed})")
    return random.Random(seed)


def digits_arrays(size: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 RGB size x size images, and their labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = (digits.images * (255 / 16)).astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(g).resize((size, size), Image.Resampling.BICUBIC))
                       for g in grey])
    return np.repeat(images[..., None], 3, axis=-1), digits.target


def write_processed(folder: Path, size: int, splits: dict[str, slice]) -> Path:
    """A labelled processed data set per split (the processing component's output format)."""
    from shared.data import DatasetWriter

    images, labels = digits_arrays(size)
    classes = [str(c) for c in range(10)]
    for split, rows in splits.items():
        writer = DatasetWriter(folder / split, size, classes=classes)
        for i in range(len(images))[rows]:
            writer.add(images[i], f"{labels[i]}/{i:04d}.png", f"{labels[i]}/{i:04d}.png", str(labels[i]))
        writer.commit({"split": split})
    return folder


def write_tiny_model(folder: Path, size: int = 32, classes: int = 10) -> Path:
    """A randomly initialised tiny classifier saved as a model artifact (weights drawn from seed 0)."""
    import torch

    from shared.models import ImageClassifier, save_artifact

    torch.manual_seed(0)
    classifier = ImageClassifier.create(TINY_ARCHITECTURE, [str(c) for c in range(classes)], size)
    return save_artifact(classifier.eval(), folder)
