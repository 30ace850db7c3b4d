"""Offline augmentation of the training split with albumentations.

Default pipeline (each step applied with its own probability):
  HorizontalFlip (p=0.5, can be switched off for data where mirroring changes the class, e.g. digits)
  Affine: shift up to 6%, scale 0.9-1.1, rotate up to 15 degrees (always, so no copy is a
          duplicate of its original; edges reflected)
  RandomBrightnessContrast: up to 20% each (p=0.5)
  GaussianBlur: kernel 3-5 (p=0.2)
  GaussNoise: std 2-8% of the range (p=0.3)

Each augmented copy is seeded from (seed, image row, copy number), so the result does not depend on
how the work is spread over processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from shared.data.parallel import fork_pool

_pipeline_cache: dict[bool, A.Compose] = {}
# (source images, output copies) of the augmentation under way. Forked workers inherit both
# mappings, read the one and write the other; only row numbers travel through the pool's pipes.
# Sending the images as task data instead pickled the whole array into every chunk of work (cost
# growing with the square of the data), and sending copies back let results pile up in memory.
_arrays: tuple[np.ndarray, np.ndarray] | None = None


def default_pipeline(hflip: bool = True) -> A.Compose:
    steps = [A.HorizontalFlip(p=0.5)] if hflip else []
    steps += [
        A.Affine(translate_percent=(-0.06, 0.06), scale=(0.9, 1.1), rotate=(-15, 15),
                 border_mode=cv2.BORDER_REFLECT_101, p=1.0),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        A.GaussianBlur(blur_limit=(3, 5), p=0.2),
        A.GaussNoise(std_range=(0.02, 0.08), p=0.3),
    ]
    return A.Compose(steps)


def describe_pipeline(hflip: bool = True) -> list[str]:
    return [type(t).__name__ for t in default_pipeline(hflip).transforms]


def copy_seed(seed: int, row: int, copy: int) -> int:
    return (seed * 1_000_003 + row * 1_009 + copy) % (2**32)


def _augment(item: tuple[int, int], *, seed: int, hflip: bool) -> int:
    """Write the copies of source row `row` into output row `k`."""
    k, row = item
    source, out = _arrays
    pipeline = _pipeline_cache.get(hflip)
    if pipeline is None:
        pipeline = _pipeline_cache[hflip] = default_pipeline(hflip)
    for copy in range(1, len(out[k]) + 1):
        pipeline.set_random_seed(copy_seed(seed, row, copy))
        out[k, copy - 1] = pipeline(image=np.asarray(source[row]))["image"]
    return k


def augment_rows(images: np.ndarray, rows: list[int], copies: int, seed: int, *, hflip: bool,
                 workers: int, scratch: Path) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (row, its copies: copies x H x W x 3) for each row, in order.

    The copies live in a memory-mapped file in `scratch` (the job's volume): memory stays flat
    however many images there are.
    """
    global _arrays
    if copies <= 0 or not rows:
        return
    out = np.lib.format.open_memmap(scratch / "augmented.npy", mode="w+", dtype=np.uint8,
                                    shape=(len(rows), copies, *images.shape[1:]))
    work = partial(_augment, seed=seed, hflip=hflip)
    items = list(enumerate(rows))
    cv2.setNumThreads(1)  # parallelism comes from processes; OpenCV threads would oversubscribe
    _arrays = (images, out)
    try:
        if workers <= 1 or len(rows) < 2:
            for k in map(work, items):
                yield rows[k], out[k]
            return
        chunksize = max(1, min(64, len(rows) // (workers * 8)))
        with fork_pool(workers) as pool:  # forked after _arrays is set
            for k in pool.imap(work, items, chunksize=chunksize):
                yield rows[k], out[k]
    finally:
        _arrays = None
