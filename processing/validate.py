"""The step both modes share: decode, validate and resize every input image into an on-disk pool.

The pool is a memory-mapped N x S x S x 3 array in a scratch folder, so data sets larger than
memory are fine, and the split/write steps after it are cheap copies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from shared.data import ImageFile, decode_images
from shared.sagemaker import JobError

log = logging.getLogger(__name__)


@dataclass
class Pool:
    """The images that decoded, in input order, and what happened to the rest."""

    files: list[ImageFile]  # kept files; files[i] is row i of `images`
    images: np.ndarray
    digests: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    found: int = 0


def validate_images(
    files: list[ImageFile],
    *,
    size: int,
    policy: str,
    workers: int,
    scratch: Path,
    max_bad_fraction: float,
) -> Pool:
    if not files:
        raise JobError("the input holds no image files (looked for .jpg .jpeg .png .bmp .gif"
                       " .webp .tif .tiff, hidden files ignored)")
    pool_file = scratch / "pool.npy"
    images = np.lib.format.open_memmap(
        pool_file, mode="w+", dtype=np.uint8, shape=(len(files), size, size, 3))
    images.flush()  # the workers open the file themselves and write their rows
    kept: list[ImageFile] = []
    rows: list[int] = []
    digests: list[str] = []
    sizes: list[tuple[int, int]] = []
    skipped: list[dict[str, str]] = []
    progress = tqdm(total=len(files), desc="decode+resize", unit="img", disable=None)
    results = decode_images([f.path for f in files], size, policy, workers, out=pool_file)
    for result in results:
        progress.update()
        source = files[result.index]
        if not result.ok:
            log.warning("skipping %s: %s", source.relpath, result.error)
            skipped.append({"path": source.relpath, "reason": str(result.error)})
            continue
        rows.append(result.index)
        kept.append(source)
        digests.append(str(result.sha256))
        sizes.append(result.stored_size or (size, size))
    progress.close()
    for new, old in enumerate(rows):  # close the gaps bad files left, so row k is kept[k]
        if new != old:
            images[new] = images[old]
    images = images[: len(kept)]
    if not kept:
        raise JobError(f"none of the {len(files)} input images could be decoded; first problem:"
                       f" {skipped[0]['path']}: {skipped[0]['reason']}")
    bad = len(skipped) / len(files)
    if bad > max_bad_fraction:
        raise JobError(
            f"{len(skipped)} of {len(files)} images ({bad:.0%}) could not be used, more than the"
            f" allowed {max_bad_fraction:.0%} (--max-bad-fraction); first problem:"
            f" {skipped[0]['path']}: {skipped[0]['reason']}"
        )
    log.info("%d images decoded, %d skipped", len(kept), len(skipped))
    return Pool(kept, images, digests, skipped, sizes, len(files))


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
