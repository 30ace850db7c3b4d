"""Decoding the raw images both modes read (shared.data's memory-mapped pool), with the drift
test's own rule on how many must decode."""

from __future__ import annotations

from pathlib import Path

from shared.data import DecodedPool, ImageFile, decode_to_pool
from shared.sagemaker import JobError

MIN_IMAGES = 2  # the unbiased MMD² needs two samples on each side


def decode_all(files: list[ImageFile], *, size: int, policy: str, workers: int, scratch: Path,
               what: str) -> DecodedPool:
    """Decode and resize `files`; fail with a clear reason when fewer than two can be used."""
    pool = decode_to_pool(files, size=size, policy=policy, workers=workers, scratch=scratch)
    if not pool.files:
        first = pool.skipped[0]
        raise JobError(f"none of the {len(files)} {what} images could be decoded; first problem:"
                       f" {first['path']}: {first['reason']}")
    if len(pool.files) < MIN_IMAGES:
        raise JobError(f"only {len(pool.files)} of the {len(files)} {what} images could be used;"
                       f" the drift test needs at least {MIN_IMAGES}")
    return pool
