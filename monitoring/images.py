"""Decoding the raw images both modes read into one uint8 array, skipping the ones that fail.

The array is memory-mapped in a scratch folder on the job's volume, and the decoding workers write
their rows into it directly (the same pattern as the processing component), so a production batch
larger than memory is fine and the parent process handles only small records.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.data import ImageFile, decode_images
from shared.sagemaker import JobError, ProcessingContext

log = logging.getLogger(__name__)
MIN_IMAGES = 2  # the unbiased MMD² needs two samples on each side


@dataclass
class DecodedImages:
    """The images that decoded, in input order (row k is files[k]), and why the others did not."""

    files: list[ImageFile]
    images: np.ndarray
    skipped: list[dict[str, str]] = field(default_factory=list)
    found: int = 0


@contextmanager
def scratch_folder(ctx: ProcessingContext) -> Iterator[Path]:
    """Scratch space beside the inputs (the job's volume, not the container's small disk)."""
    root = ctx.paths.base / "processing"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=root) as tmp:
        yield Path(tmp)


def decode_all(files: list[ImageFile], *, size: int, policy: str, workers: int, scratch: Path,
               what: str) -> DecodedImages:
    """Decode and resize `files`; fail with a clear reason when fewer than two can be used."""
    pool_file = scratch / "images.npy"
    images = np.lib.format.open_memmap(pool_file, mode="w+", dtype=np.uint8,
                                       shape=(len(files), size, size, 3))
    images.flush()  # the workers open the file themselves
    rows: list[int] = []
    skipped: list[dict[str, str]] = []
    for result in decode_images([f.path for f in files], size, policy, workers, out=pool_file):
        if result.ok:
            rows.append(result.index)
        else:
            log.warning("skipping %s: %s", files[result.index].relpath, result.error)
            skipped.append({"path": files[result.index].relpath, "reason": str(result.error)})
    if not rows:
        raise JobError(f"none of the {len(files)} {what} images could be decoded; first problem:"
                       f" {skipped[0]['path']}: {skipped[0]['reason']}")
    if len(rows) < MIN_IMAGES:
        raise JobError(f"only {len(rows)} of the {len(files)} {what} images could be used; the drift"
                       f" test needs at least {MIN_IMAGES}")
    for new, old in enumerate(rows):  # close the gaps bad files left, so row k is kept[k]
        if new != old:
            images[new] = images[old]
    log.info("%d %s images decoded, %d skipped", len(rows), what, len(skipped))
    return DecodedImages([files[i] for i in rows], images[: len(rows)], skipped, len(files))
