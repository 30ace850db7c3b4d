"""The step both modes share: decode, validate and resize every input image into an on-disk pool,
then apply the processing job's policy on what failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shared.data import DecodedPool, ImageFile, decode_to_pool
from shared.sagemaker import JobError


def validate_images(
    files: list[ImageFile],
    *,
    size: int,
    policy: str,
    workers: int,
    scratch: Path,
    max_bad_fraction: float,
) -> DecodedPool:
    if not files:
        raise JobError("the input holds no image files (looked for .jpg .jpeg .png .bmp .gif"
                       " .webp .tif .tiff, hidden files ignored)")
    pool = decode_to_pool(files, size=size, policy=policy, workers=workers, scratch=scratch)
    skipped = pool.skipped
    if not pool.files:
        raise JobError(f"none of the {len(files)} input images could be decoded; first problem:"
                       f" {skipped[0]['path']}: {skipped[0]['reason']}")
    bad = len(skipped) / len(files)
    if bad > max_bad_fraction:
        raise JobError(
            f"{len(skipped)} of {len(files)} images ({bad:.0%}) could not be used, more than the"
            f" allowed {max_bad_fraction:.0%} (--max-bad-fraction); first problem:"
            f" {skipped[0]['path']}: {skipped[0]['reason']}"
        )
    return pool


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
