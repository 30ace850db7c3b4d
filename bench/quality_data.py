"""Small real image data sets that ship inside installed packages, for bench/quality.py.

No download: scikit-learn's digits and sample photos, scikit-image's LFW subset and textures.
Each is written as an ImageFolder already split into `train/`, `validation/` and `test/` (seeded,
stratified), which the processing job keeps as given (`--split-dirs auto`), so the pipeline and the
pixel baselines see the same split.

- digits: 1,797 handwritten digits, 8 px upscaled to 32, 10 classes (the embedded sample data).
- faces: scikit-image's LFW subset, 200 grey 25 px crops, face / not-face.
- textures: brick, grass and gravel photos (512 px, grey) cut into 300 disjoint 48 px patches.
- scenes: scikit-learn's two sample photos (a temple in China, a flower) cut into 520 disjoint
  colour 32 px patches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = {"train": 0.6, "validation": 0.2, "test": 0.2}
SEED = 0


def patches(image: np.ndarray, size: int) -> list[np.ndarray]:
    """Disjoint size x size tiles, row by row (no two share a pixel, so a split cannot leak)."""
    h, w = image.shape[:2]
    return [image[y:y + size, x:x + size] for y in range(0, h - size + 1, size)
            for x in range(0, w - size + 1, size)]


def digits() -> dict[str, list[np.ndarray]]:
    from shared.sample_data import digits_images

    images, labels = digits_images(32)
    out: dict[str, list[np.ndarray]] = {}
    for image, label in zip(images, labels, strict=True):
        out.setdefault(label, []).append(image)
    return out


def faces() -> dict[str, list[np.ndarray]]:
    from skimage import data

    grey = np.rint(data.lfw_subset() * 255).astype(np.uint8)  # the first 100 are faces
    return {"face": list(grey[:100]), "not-face": list(grey[100:])}


def textures() -> dict[str, list[np.ndarray]]:
    from skimage import data

    return {name: patches(getattr(data, name)(), 48) for name in ("brick", "grass", "gravel")}


def scenes() -> dict[str, list[np.ndarray]]:
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {"china": patches(china, 32), "flower": patches(flower, 32)}


DATASETS: dict[str, Callable[[], dict[str, list[np.ndarray]]]] = {
    "digits": digits, "faces": faces, "textures": textures, "scenes": scenes}


def split(images: dict[str, list[np.ndarray]], seed: int = SEED) -> dict[str, dict[str, list]]:
    """{split: {class: images}}: each class shuffled and cut in the SPLITS proportions."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, list]] = {name: {} for name in SPLITS}
    for label in sorted(images):
        members = images[label]
        order = rng.permutation(len(members))
        n_train = round(len(members) * SPLITS["train"])
        n_val = round(len(members) * SPLITS["validation"])
        cuts = {"train": order[:n_train], "validation": order[n_train:n_train + n_val],
                "test": order[n_train + n_val:]}
        for name, picked in cuts.items():
            out[name][label] = [members[i] for i in picked]
    return out


def write(name: str, root: Path) -> dict[str, dict[str, list]]:
    """Write data set `name` under root/<split>/<class>/; returns the split images."""
    parts = split(DATASETS[name]())
    for part, classes in parts.items():
        for label, members in classes.items():
            folder = root / part / label
            folder.mkdir(parents=True, exist_ok=True)
            for index, image in enumerate(members):
                Image.fromarray(image).save(folder / f"{name}-{index:04d}.png")
    return parts


def as_arrays(classes: dict[str, list[np.ndarray]], labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(pixels in [0, 1], one row per image; class indices) for the pixel baselines."""
    x = [image.astype(np.float32).reshape(-1) / 255 for label in labels for image in classes[label]]
    y = [i for i, label in enumerate(labels) for _ in classes[label]]
    return np.stack(x), np.array(y)
