"""Which images to explain: all of them, or a seeded sample spread evenly over the classes.

Integrated gradients costs n_steps forward and backward passes per image, so large data sets are
sampled. With labels the sample is stratified: every class gets an equal share (a class with fewer
images than its share gives the rest to the others), so rare classes are explained too. The same
seed gives the same sample on every host, and each host then takes its own share of it.
"""

from __future__ import annotations

import numpy as np


def equal_quotas(sizes: list[int], total: int, rng: np.random.Generator) -> list[int]:
    """Split `total` over groups as evenly as their sizes allow; leftovers go to seeded groups."""
    quotas = [0] * len(sizes)
    remaining = min(total, sum(sizes))
    while remaining > 0:
        open_groups = [g for g, size in enumerate(sizes) if quotas[g] < size]
        share = remaining // len(open_groups)
        if share == 0:
            for g in rng.permutation(open_groups)[:remaining]:
                quotas[g] += 1
            break
        for g in open_groups:
            extra = min(share, sizes[g] - quotas[g])
            quotas[g] += extra
            remaining -= extra
    return quotas


def sample_indices(labels: np.ndarray, max_images: int | None, seed: int) -> np.ndarray:
    """Sorted indices of the images to explain; stratified by `labels` (-1: unknown, one group)."""
    n = len(labels)
    if max_images is None or max_images >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    groups = [rng.permutation(np.flatnonzero(labels == g)) for g in np.unique(labels)]
    quotas = equal_quotas([len(g) for g in groups], max_images, rng)
    return np.sort(np.concatenate([g[:q] for g, q in zip(groups, quotas, strict=True)]))
