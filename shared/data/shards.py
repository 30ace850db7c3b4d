"""Images as consecutive .npy files that decoding workers fill in place.

Row i of a `ShardFiles` is row i % rows_per_shard of file i // rows_per_shard. The files are created
sparse, full size; any process may write rows (each opens the files itself, so nothing but the
paths crosses a pipe), and `truncate` then cuts them to the rows kept, with no copy. A decoded pool
in a scratch folder is one such file; `DatasetWriter.reserve` hands out the dataset's own shards, so
processing serve decodes straight into its output instead of copying a scratch pool into it.
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Each process keeps a few files mapped: a decoding worker's rows come in runs of consecutive
# indices, so it writes to one or two files at a time (thousands may exist).
_MAPPED_FILES = 4
_maps: OrderedDict[Path, np.memmap] = OrderedDict()


def _mapped(path: Path) -> np.memmap:
    if path in _maps:
        _maps.move_to_end(path)
    else:
        _maps[path] = np.load(path, mmap_mode="r+")
        if len(_maps) > _MAPPED_FILES:
            _maps.popitem(last=False)
    return _maps[path]


def forget_mapped() -> None:
    """Unmap this process's files (before they are truncated, renamed or removed)."""
    _maps.clear()


class ShardFiles:
    """`count` rows in files `folder / name(first)`, `folder / name(first + 1)`, ... of
    `rows_per_shard` rows each (the last one may hold fewer). Small to pickle: a pool sends it to
    the workers with every batch of work, so the file names are derived, not listed."""

    def __init__(self, folder: Path, name: Callable[[int], str], first: int, count: int,
                 rows_per_shard: int, image_shape: tuple[int, int, int]) -> None:
        self.folder = Path(folder)
        self.name = name
        self.first = first
        self.count = count
        self.rows_per_shard = rows_per_shard
        self.image_shape = image_shape

    @classmethod
    def create(cls, folder: Path, name: Callable[[int], str], first: int, count: int,
               rows_per_shard: int, image_shape: tuple[int, int, int]) -> ShardFiles:
        """Empty (sparse) files for `count` rows."""
        store = cls(folder, name, first, count, rows_per_shard, image_shape)
        forget_mapped()  # a path may name an earlier, removed file still mapped here
        for number, path in enumerate(store.paths):
            rows = min(rows_per_shard, count - number * rows_per_shard)
            np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8,
                                      shape=(rows, *image_shape)).flush()
        return store

    @property
    def paths(self) -> list[Path]:
        files = -(-self.count // self.rows_per_shard)
        return [self.folder / self.name(self.first + k) for k in range(files)]

    def __len__(self) -> int:
        return self.count

    def _locate(self, index: int) -> tuple[Path, int]:
        if not 0 <= index < self.count:
            raise IndexError(f"row {index} of {self.count}")
        number, row = divmod(index, self.rows_per_shard)
        return self.folder / self.name(self.first + number), row

    def __getitem__(self, index: int) -> np.ndarray:
        path, row = self._locate(index)
        return _mapped(path)[row]

    def __setitem__(self, index: int, image: np.ndarray) -> None:
        path, row = self._locate(index)
        _mapped(path)[row] = image

    def array(self) -> np.ndarray:
        """All rows as one memory-mapped array: for a store of one file."""
        paths = self.paths
        if len(paths) != 1:
            raise ValueError(f"{len(paths)} files are not one array")
        return np.load(paths[0], mmap_mode="r")

    def truncate(self, count: int) -> None:
        """Keep the first `count` rows: later files are removed and the last one kept is cut short
        (its header rewritten in place, the file truncated), so nothing is copied."""
        if not 0 <= count <= self.count:
            raise ValueError(f"cannot keep {count} of {self.count} rows")
        forget_mapped()
        before = self.paths
        self.count = count
        kept = self.paths
        for path in before[len(kept):]:
            path.unlink()
        rows = count - (len(kept) - 1) * self.rows_per_shard
        if kept and rows < self.rows_per_shard:
            _cut(kept[-1], (rows, *self.image_shape))


def _cut(path: Path, shape: tuple[int, ...]) -> None:
    """Shorten a uint8 .npy file to `shape` (fewer rows) in place."""
    with open(path, "r+b") as f:
        if np.lib.format.read_magic(f) != (1, 0):
            raise ValueError(f"{path}: not a version 1.0 .npy file")
        np.lib.format.read_array_header_1_0(f)
        offset = f.tell()
        header = io.BytesIO()  # fewer rows: a header no longer, padded to the same length
        np.lib.format.write_array_header_1_0(
            header, {"descr": "|u1", "fortran_order": False, "shape": shape})
        if len(header.getvalue()) != offset:
            raise ValueError(f"{path}: a {offset}-byte .npy header cannot be rewritten in place")
        f.seek(0)
        f.write(header.getvalue())
    os.truncate(path, offset + int(np.prod(shape)))
