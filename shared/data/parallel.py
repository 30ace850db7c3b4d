"""Decoding and resizing many image files on every CPU, results in input order."""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import multiprocessing.pool
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from shared.data.images import ImageDecodeError, fit_square, load_rgb
from shared.data.shards import ShardFiles, forget_mapped


@dataclass(frozen=True)
class Decoded:
    """One file's outcome: the fitted image (None when written to `out`), or why it was refused."""

    index: int
    image: np.ndarray | None
    error: str | None
    sha256: str | None
    stored_size: tuple[int, int] | None  # width, height as stored in the file

    @property
    def ok(self) -> bool:
        return self.error is None


def _decode_one(item: tuple[int, Path], size: int, policy: str, out: ShardFiles | None) -> Decoded:
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
    stored = image.info.get("stored_size", image.size)
    if out is not None:
        out[index] = fitted
        return Decoded(index, None, None, digest, stored)
    return Decoded(index, fitted, None, digest, stored)


def fork_pool(workers: int) -> multiprocessing.pool.Pool:
    """A pool of `workers` forked processes. What the parent holds is first frozen out of the
    cyclic garbage collector (gc.freeze's documented use before a fork): a collection writes to
    every object it tracks, so each worker would otherwise copy every inherited page holding one,
    the per-image lists among them (bench/scaling.py, monitoring serve: 11 kB of memory per added
    image without a freeze, 2.7 with this one and the warm job's, pipelines/warm.py). For one-shot
    jobs: frozen objects are never collected as cyclic garbage, which a long-running server would
    accumulate."""
    gc.freeze()
    return multiprocessing.get_context("fork").Pool(workers)


def decode_images(
    paths: Sequence[Path], size: int, policy: str = "crop", workers: int = 1,
    out: ShardFiles | None = None,
) -> Iterator[Decoded]:
    """Yield one Decoded per path, in order; `workers` > 1 spreads the work over processes.

    With `out` (len(paths) rows of size x size x 3) each image is written to its row there by the
    worker that decoded it, instead of being sent back through a pipe: the parent then handles only
    small records, which keeps it from becoming the bottleneck.
    """
    work = partial(_decode_one, size=size, policy=policy, out=out)
    items = list(enumerate(paths))
    if workers <= 1 or len(items) < 2:
        try:
            yield from map(work, items)
        finally:
            forget_mapped()  # do not keep the caller's files mapped
        return
    chunksize = max(1, min(32, len(items) // (workers * 8)))
    # fork: the workers need nothing but this module, and start in milliseconds.
    with fork_pool(workers) as pool:
        yield from pool.imap(work, items, chunksize=chunksize)
