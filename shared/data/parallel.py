"""Decoding and resizing many image files on every CPU, results in input order."""

from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from shared.data.images import ImageDecodeError, fit_square, load_rgb


@dataclass(frozen=True)
class Decoded:
    """One file's outcome: the fitted image, or why it was refused."""

    index: int
    image: np.ndarray | None
    error: str | None
    sha256: str | None
    stored_size: tuple[int, int] | None  # width, height as stored in the file


def _decode_one(item: tuple[int, Path], size: int, policy: str) -> Decoded:
    index, path = item
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return Decoded(index, None, f"unreadable: {exc.strerror or exc}", None, None)
    digest = hashlib.sha256(data).hexdigest()
    try:
        image = load_rgb(data, draft_size=size)
        fitted = np.asarray(fit_square(image, size, policy), dtype=np.uint8)
    except ImageDecodeError as exc:
        return Decoded(index, None, str(exc), digest, None)
    return Decoded(index, fitted, None, digest, image.info.get("stored_size", image.size))


def decode_images(
    paths: Sequence[Path], size: int, policy: str = "crop", workers: int = 1
) -> Iterator[Decoded]:
    """Yield one Decoded per path, in order; `workers` > 1 spreads the work over processes."""
    work = partial(_decode_one, size=size, policy=policy)
    items = list(enumerate(paths))
    if workers <= 1 or len(items) < 2:
        yield from map(work, items)
        return
    chunksize = max(1, min(32, len(items) // (workers * 8)))
    # fork: the workers need nothing but this module, and start in milliseconds.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(work, items, chunksize=chunksize)
