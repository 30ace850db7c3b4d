"""What both modes' report.json say about the images they read."""

from __future__ import annotations

from typing import Any

import numpy as np

from processing.config import CommonConfig
from shared.data import DecodedPool
from shared.sagemaker import ProcessingContext


def size_statistics(sizes: list[tuple[int, int]]) -> dict[str, Any]:
    """Width, height and aspect ratio of the images as stored (before resizing)."""
    if not sizes:
        return {}
    arr = np.asarray(sizes, dtype=np.float64)
    stats = {}
    for name, values in (("width", arr[:, 0]), ("height", arr[:, 1]),
                         ("aspect_ratio", arr[:, 0] / arr[:, 1])):
        stats[name] = {"min": round(float(values.min()), 3), "max": round(float(values.max()), 3),
                       "mean": round(float(values.mean()), 3),
                       "median": round(float(np.median(values)), 3)}
    return stats


def common_report(mode: str, config: CommonConfig, ctx: ProcessingContext, root,
                  pool: DecodedPool) -> dict[str, Any]:
    return {
        "mode": mode,
        "input": str(root),
        "host": ctx.current_host,
        "hosts": ctx.hosts,
        "image_size": config.image_size,
        "resize_policy": config.resize_policy,
        "images_found": pool.found,
        "skipped": pool.skipped,
        "skipped_fraction": round(len(pool.skipped) / pool.found, 4),
        "image_sizes": size_statistics(pool.sizes),
    }
