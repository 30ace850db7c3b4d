"""Fixed, documented image corruptions for the evaluation job's robustness figures.

Each takes N x H x W x 3 uint8 images and returns corrupted copies of the same shape and type. The
severities are fixed (they are part of what `evaluation.json` means) and moderate: a person still
recognises every image. Noise is seeded, so a rerun gives the same figures.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

NOISE_SIGMA = 0.08  # Gaussian noise, standard deviation as a fraction of the 0..255 range
BLUR_RADIUS = 1.0  # Gaussian blur radius in pixels
JPEG_QUALITY = 30  # JPEG re-compression quality
BRIGHTNESS_SHIFT = 0.3  # added to every channel, as a fraction of the range (clipped)


def gaussian_noise(images: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = images.astype(np.float32) + rng.normal(0, NOISE_SIGMA * 255, images.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _per_image(images: np.ndarray, change: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(change(Image.fromarray(im)).convert("RGB")) for im in images]) \
        if len(images) else images.copy()


def blur(images: np.ndarray, seed: int = 0) -> np.ndarray:
    return _per_image(images, lambda im: im.filter(ImageFilter.GaussianBlur(BLUR_RADIUS)))


def jpeg(images: np.ndarray, seed: int = 0, quality: int = JPEG_QUALITY) -> np.ndarray:
    def recompress(im: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        im.save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        return Image.open(buffer)

    return _per_image(images, recompress)


def brightness(images: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.clip(images.astype(np.int16) + round(BRIGHTNESS_SHIFT * 255), 0, 255).astype(
        np.uint8)


CORRUPTIONS: dict[str, tuple[Callable[[np.ndarray, int], np.ndarray], str]] = {
    "gaussian_noise": (gaussian_noise, f"Gaussian noise, sigma {NOISE_SIGMA} of the range"),
    "blur": (blur, f"Gaussian blur, radius {BLUR_RADIUS:g} px"),
    "jpeg": (jpeg, f"JPEG re-compression at quality {JPEG_QUALITY}"),
    "brightness": (brightness, f"brightness +{BRIGHTNESS_SHIFT} of the range"),
}


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = 15) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence|, weighted by the
    bin's share of images (Guo et al., 2017)."""
    if not len(labels):
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(error)
