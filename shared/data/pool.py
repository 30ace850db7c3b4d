"""Decoding many image files into memory-mapped uint8 rows on the job's volume.

The rows go to one file in a scratch folder, or to a dataset's own shards
(`DatasetWriter.reserve`). The decoding workers write their rows straight into the files (see
`decode_images(out=...)`), so data larger than memory is fine and the parent handles only small
records. Rows of files that failed are closed up afterwards: row k is `files[k]`. Files that cannot
be used are skipped with their reason; `decode_usable` fails the job when too few are left (each
component says how many it needs).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from tqdm import tqdm

from shared.data.discovery import ImageFile
from shared.data.parallel import decode_images
from shared.data.shards import ShardFiles
from shared.errors import UserError

log = logging.getLogger(__name__)
SCRATCH_PREFIX = ".scratch-"


@dataclass
class DecodedPool:
    files: list[ImageFile]  # the files that decoded; files[k] is row k of `rows`
    rows: ShardFiles
    digests: list[str]  # sha256 of each kept file's bytes
    sizes: list[tuple[int, int]]  # width, height as stored
    skipped: list[dict[str, str]] = field(default_factory=list)  # path and reason
    found: int = 0

    @cached_property
    def images(self) -> np.ndarray:
        """The rows as one array (a pool decoded into a scratch folder is one file)."""
        return self.rows.array()


@contextmanager
def scratch_folder(root: Path) -> Iterator[Path]:
    """A temporary folder under `root` (the job's volume, not the container's small disk).

    Scratch folders of a killed earlier run (decoded pools can be gigabytes) are removed first.
    """
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{SCRATCH_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=root) as tmp:
        yield Path(tmp)


def _pool_name(number: int) -> str:
    return "pool.npy"


def decode_to_pool(files: list[ImageFile], *, size: int, policy: str, workers: int,
                   into: Path | ShardFiles) -> DecodedPool:
    """Decode `files` into `into`: a scratch folder (one file) or rows made ready for them."""
    if isinstance(into, Path):
        into = ShardFiles.create(into, _pool_name, 0, len(files), max(1, len(files)),
                                 (size, size, 3))
    if len(into) != len(files) or into.image_shape != (size, size, 3):
        raise ValueError(f"{len(into)} rows of {into.image_shape} for {len(files)} images of"
                         f" {size} px")
    rows: list[int] = []
    digests: list[str] = []
    sizes: list[tuple[int, int]] = []
    skipped: list[dict[str, str]] = []
    progress = tqdm(total=len(files), desc="decode+resize", unit="img", disable=None)
    for result in decode_images([f.path for f in files], size, policy, workers, out=into):
        progress.update()
        if not result.ok:
            log.warning("skipping %s: %s", files[result.index].relpath, result.error)
            skipped.append({"path": files[result.index].relpath, "reason": str(result.error)})
            continue
        rows.append(result.index)
        digests.append(str(result.sha256))
        sizes.append(result.stored_size or (size, size))
    progress.close()
    for new, old in enumerate(rows):  # close the gaps bad files left
        if new != old:
            into[new] = into[old]
    into.truncate(len(rows))
    log.info("%d images decoded, %d skipped", len(rows), len(skipped))
    return DecodedPool([files[i] for i in rows], into, digests, sizes, skipped, len(files))


def decode_usable(files: list[ImageFile], *, size: int, policy: str, workers: int,
                  into: Path | ShardFiles, what: str, min_images: int = 1,
                  max_bad_fraction: float = 1.0) -> DecodedPool:
    """`decode_to_pool`, then a clear failure when fewer than `min_images` files, or more than
    `max_bad_fraction` of them, could not be used; the first problem is named."""
    if not files:
        raise UserError(f"the input holds no {what} image files (looked for .jpg .jpeg .png .bmp"
                        " .gif .webp .tif .tiff, hidden files ignored)")
    pool = decode_to_pool(files, size=size, policy=policy, workers=workers, into=into)
    first = (f"; first problem: {pool.skipped[0]['path']}: {pool.skipped[0]['reason']}"
             if pool.skipped else "")
    if not pool.files:
        raise UserError(f"none of the {len(files)} {what} images could be decoded{first}")
    if len(pool.files) < min_images:
        raise UserError(f"only {len(pool.files)} of the {len(files)} {what} images could be used;"
                        f" at least {min_images} are needed{first}")
    bad = len(pool.skipped) / len(files)
    if bad > max_bad_fraction:
        raise UserError(f"{len(pool.skipped)} of {len(files)} {what} images ({bad:.0%}) could not"
                        f" be used, more than the allowed {max_bad_fraction:.0%}"
                        f" (--max-bad-fraction){first}")
    return pool
