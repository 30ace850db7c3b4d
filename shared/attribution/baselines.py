"""The reference inputs integrated gradients starts from, in pixel space (float, 0..255).

Attributions answer "what made the output differ from the output at the baseline", so the baseline
decides the question: black asks about every lit pixel, a blurred copy about edges and fine detail
(colour and layout are shared with the input), uniform noise about structure versus no structure.
Noise is seeded per image (by the image's position in the data set, not its place in a batch), so an
image gets the same baseline however the work is batched or split across hosts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from shared.choices import IG_BASELINES


def blur_sigma(height: int, width: int) -> float:
    """Strong enough to remove strokes and texture, not the overall colour: a tenth of the side."""
    return max(1.0, min(height, width) / 10.0)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of an N x C x H x W batch; edges replicated so borders stay unbiased."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    out = F.pad(images, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, horizontal, groups=channels)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, vertical, groups=channels)


def make_baselines(kind: str, images: torch.Tensor, positions: list[int] | np.ndarray,
                   seed: int = 0) -> torch.Tensor:
    """Baselines for a float N x 3 x H x W batch in 0..255; `positions` seed the noise per image."""
    if kind == "black":
        return torch.zeros_like(images)
    if kind == "blur":
        return gaussian_blur(images, blur_sigma(images.shape[2], images.shape[3]))
    if kind == "noise":
        if len(positions) != len(images):
            raise ValueError(f"{len(positions)} positions for {len(images)} images")
        shape = tuple(images.shape[1:])
        noise = np.stack([np.random.default_rng([seed, int(p)]).uniform(0.0, 255.0, shape)
                          for p in positions]).astype(np.float32)
        return torch.from_numpy(noise).to(images.device)
    raise ValueError(f"unknown baseline {kind!r}; choose one of {', '.join(IG_BASELINES)}")
