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

import multiprocessing
from collections.abc import Iterator
from functools import partial

import albumentations as A
import cv2
import numpy as np

_pipeline_cache: dict[bool, A.Compose] = {}


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


def _augment_row(row: int, *, images: np.ndarray, copies: int, seed: int, hflip: bool):
    pipeline = _pipeline_cache.get(hflip)
    if pipeline is None:
        pipeline = _pipeline_cache[hflip] = default_pipeline(hflip)
    out = []
    for copy in range(1, copies + 1):
        pipeline.set_random_seed(copy_seed(seed, row, copy))
        out.append(np.ascontiguousarray(pipeline(image=np.asarray(images[row]))["image"]))
    return row, out


def augment_rows(
    images: np.ndarray, rows: list[int], copies: int, seed: int, *, hflip: bool, workers: int
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Yield (row, [copy 1..copies]) for each row, in order."""
    if copies <= 0:
        return
    work = partial(_augment_row, images=images, copies=copies, seed=seed, hflip=hflip)
    cv2.setNumThreads(1)  # parallelism comes from processes; OpenCV threads would oversubscribe
    if workers <= 1 or len(rows) < 2:
        yield from map(work, rows)
        return
    chunksize = max(1, min(64, len(rows) // (workers * 8)))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(work, rows, chunksize=chunksize)
