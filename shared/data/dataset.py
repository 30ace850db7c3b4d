"""The processed-dataset format that processing writes and training, monitoring and explainability read.

    <dir>/shard-00000.npy     uint8 N x H x W x 3, each file under a size bound
    <dir>/manifest.jsonl      one line per image: id, source, label, label_index, shard, row
    <dir>/classes.json        class names in index order (when labelled)
    <dir>/report.json         what the job did and skipped

The writer fills a hidden sibling folder and renames it into place only when everything is written,
so a crashed job never leaves a folder that looks complete. Several hosts writing into one S3 prefix
name their files per host (`shard-00000-algo-2.npy`, `manifest-algo-2.jsonl`: see
`shared.sagemaker.paths.per_host_name`), so they never collide, and the reader merges every
manifest it finds. The reader trusts no manifest line: each row must point at an existing image of
a shard in the folder itself, and each label at one of the classes.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from shared import schema
from shared.atomic import replace_folder, staging_folder
from shared.data.shards import ShardFiles
from shared.errors import UserError
from shared.sagemaker.paths import per_host_name
from shared.schema import setting

MANIFEST = "manifest.jsonl"
CLASSES = "classes.json"
REPORT = "report.json"
NPY_HEADER_BYTES = 128  # numpy's .npy header for a 4-d uint8 array is padded to 128 bytes
MB = 1_000_000
SHARD_NAME = re.compile(r"shard-[A-Za-z0-9_.-]*\.npy")  # no separators: nothing outside the folder


# A shard is one Batch Transform request: no more images than the model server takes in one
# (its SAGEMAKER_MAX_IMAGES_PER_REQUEST default).
MAX_SHARD_ROWS = 4096


def shard_name(number: int, host: str | None) -> str:
    return per_host_name(f"shard-{number:05d}.npy", host)


def rows_per_shard(image_shape: tuple[int, int], max_shard_mb: float) -> int:
    row_bytes = image_shape[0] * image_shape[1] * 3
    rows = min(MAX_SHARD_ROWS, int((max_shard_mb * MB - NPY_HEADER_BYTES) // row_bytes))
    if rows < 1:
        raise UserError(
            f"one {image_shape[0]}x{image_shape[1]} image ({row_bytes:,} bytes) does not fit in a"
            f" {max_shard_mb} MB shard; raise the shard size bound"
        )
    return rows


def rows_as_block(images: list[np.ndarray]) -> np.ndarray:
    """The images as one N x H x W x 3 array: a view, not a copy, when they are consecutive rows of
    one array (a decoded pool's rows, added in order): stacking would first copy every image into
    fresh memory."""
    first, base = images[0], images[0].base
    if isinstance(base, np.ndarray) and base.flags.c_contiguous and base.shape[1:] == first.shape:
        start, remainder = divmod(_address(first) - _address(base), first.nbytes)
        if remainder == 0 and all(image.base is base and image.flags.c_contiguous
                                  and _address(image) == _address(first) + i * first.nbytes
                                  for i, image in enumerate(images)):
            return base[start:start + len(images)]
    return np.stack(images)


def _address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


@dataclass(frozen=True)
class ManifestRecord:
    """One manifest line: an image's id, where it came from, its label, and where its pixels are."""

    id: str = setting(min_length=1)
    shard: str = setting(min_length=1)
    row: int = setting(min=0)
    source: str = setting("")
    label: str | None = setting(None)
    label_index: int | None = setting(None, min=0)
    channel: str | None = setting(None)  # the input channel it came from (processing train)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in schema.to_json(self).items() if k != "channel" or v is not None}


class DatasetWriter:
    """Accumulates images into bounded shards and publishes the dataset atomically on `commit`."""

    def __init__(
        self,
        out_dir: Path,
        image_size: int,
        *,
        classes: list[str] | None = None,
        max_shard_mb: float = 6.0,
        host: str | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.image_shape = (image_size, image_size)
        self.classes = classes
        self._class_index = {c: i for i, c in enumerate(classes)} if classes is not None else None
        self.rows_per_shard = rows_per_shard(self.image_shape, max_shard_mb)
        self.host = host  # several hosts share the output: file names carry this one's name
        self._staged = staging_folder(self.out_dir)
        self._buffer: list[np.ndarray] = []
        self._records: list[ManifestRecord] = []
        self._shard_count = 0
        self._ids: set[str] = set()
        self._reserved: ShardFiles | None = None
        self._reserved_used = 0

    def _shard_name(self, number: int) -> str:
        return shard_name(number, self.host)

    def add(self, image: np.ndarray, image_id: str, source: str, label: str | None = None,
            channel: str | None = None) -> None:
        if image.dtype != np.uint8 or image.shape != (*self.image_shape, 3):
            raise ValueError(f"image {image_id} is {image.dtype} {image.shape}, expected uint8 "
                             f"{(*self.image_shape, 3)}")
        self._settle_reserved()
        self._record(image_id, self._shard_name(self._shard_count), len(self._buffer), source,
                     label, channel)
        self._buffer.append(image)
        if len(self._buffer) == self.rows_per_shard:
            self._flush()

    def reserve(self, count: int) -> ShardFiles:
        """Empty shards for the next `count` images, for decoding workers to fill in place, so that
        no image is copied through this process. Cut them to the rows kept (`truncate`), then name
        each row's image in order with `add_reserved`."""
        self._flush()
        self._settle_reserved()
        self._reserved = ShardFiles.create(self._staged, partial(shard_name, host=self.host),
                                           self._shard_count, count, self.rows_per_shard,
                                           (*self.image_shape, 3))
        self._reserved_used = 0
        return self._reserved

    def add_reserved(self, image_id: str, source: str, label: str | None = None,
                     channel: str | None = None) -> None:
        """Record the image in the next row of the reserved shards."""
        store = self._reserved
        if store is None or self._reserved_used >= len(store):
            raise ValueError(f"no reserved row is left for {image_id}")
        number, row = divmod(self._reserved_used, store.rows_per_shard)
        self._record(image_id, self._shard_name(store.first + number), row, source, label, channel)
        self._reserved_used += 1

    def _settle_reserved(self) -> None:
        """Count the reserved shards as written; every row must have been named."""
        store, self._reserved = self._reserved, None
        if store is None:
            return
        if self._reserved_used != len(store):
            raise ValueError(f"{len(store) - self._reserved_used} of {len(store)} reserved rows"
                             " were not named (truncate the shards to the rows kept)")
        self._shard_count += len(store.paths)

    def _record(self, image_id: str, shard: str, row: int, source: str, label: str | None,
                channel: str | None) -> None:
        if image_id in self._ids:
            raise ValueError(f"duplicate image id {image_id}")
        label_index = None
        if label is not None and self._class_index is not None:
            if label not in self._class_index:
                raise ValueError(f"label {label!r} of {image_id} is not one of the classes")
            label_index = self._class_index[label]
        self._ids.add(image_id)
        self._records.append(ManifestRecord(image_id, shard, row, source, label, label_index,
                                            channel))

    def _flush(self) -> None:
        if not self._buffer:
            return
        np.save(self._staged / self._shard_name(self._shard_count), rows_as_block(self._buffer))
        self._buffer = []
        self._shard_count += 1

    def __len__(self) -> int:
        return len(self._records)

    def commit(self, report: dict[str, Any]) -> Path:
        """Write the remaining shard, manifest, classes and report; then publish the folder."""
        self._flush()
        self._settle_reserved()
        with open(self._staged / per_host_name(MANIFEST, self.host), "w") as f:
            for record in self._records:
                f.write(json.dumps(record.to_json()) + "\n")
        if self.classes is not None:
            (self._staged / CLASSES).write_text(json.dumps(self.classes) + "\n")
        (self._staged / per_host_name(REPORT, self.host)).write_text(json.dumps(report, indent=2)
                                                                     + "\n")
        replace_folder(self._staged, self.out_dir)
        return self.out_dir

    def abort(self) -> None:
        shutil.rmtree(self._staged, ignore_errors=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


class DatasetFormatError(UserError):
    """A folder that is not a complete processed dataset."""


class ProcessedDataset:
    """Random access to a processed dataset; shards are memory-mapped, not read into memory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetFormatError(f"processed dataset folder {self.root} does not exist")
        manifests = sorted(self.root.glob("manifest*.jsonl"))
        if not manifests:
            raise DatasetFormatError(
                f"{self.root} is not a processed dataset: it has no {MANIFEST}"
                " (is it the output of the processing component?)"
            )
        self.records: list[ManifestRecord] = []
        for manifest in manifests:
            with open(manifest) as f:
                self.records.extend(self._record(manifest.name, number, line)
                                    for number, line in enumerate(f, start=1) if line.strip())
        self.classes = self._classes()
        self._shards: dict[str, np.ndarray] = {}
        for name in sorted({r.shard for r in self.records}):
            if not SHARD_NAME.fullmatch(name):
                raise DatasetFormatError(f"{self.root}: manifest names {name!r}, which is not a shard"
                                         " file name (shard-*.npy in the dataset folder itself)")
            path = self.root / name
            if not path.exists():
                raise DatasetFormatError(f"{self.root}: shard {name} named in the manifest is missing")
            self._shards[name] = np.load(path, mmap_mode="r", allow_pickle=False)
        shapes = {s.shape[1:] for s in self._shards.values()}
        if len(shapes) > 1:
            raise DatasetFormatError(f"{self.root}: shards have different image shapes {shapes}")
        self.image_shape: tuple[int, int, int] | None = shapes.pop() if shapes else None
        for r in self.records:  # every row is an image of its shard, every label one of the classes
            if r.row >= len(self._shards[r.shard]):
                raise DatasetFormatError(f"{self.root}: {r.shard} has no row {r.row} ({r.id})")
            if r.label_index is not None and (self.classes is None
                                              or r.label_index >= len(self.classes)):
                raise DatasetFormatError(f"{self.root}: {r.id} has label_index {r.label_index},"
                                         f" but {CLASSES} names {len(self.classes or [])} classes")

    def _record(self, manifest: str, number: int, line: str) -> ManifestRecord:
        try:
            return schema.from_json(ManifestRecord, json.loads(line))
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"{self.root}/{manifest} line {number} is not valid JSON:"
                                     f" {exc}") from None
        except schema.SchemaError as exc:  # named here: only a bad line pays for its location
            raise DatasetFormatError(f"{self.root}/{manifest} line {number}: {exc}") from None

    def _classes(self) -> list[str] | None:
        path = self.root / CLASSES
        if not path.exists():
            return None
        try:
            names = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"{path} is not valid JSON: {exc}") from None
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)
                and len(set(names)) == len(names)):
            raise DatasetFormatError(f"{path} must be a list of distinct class names")
        return names

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labelled(self) -> bool:
        return bool(self.records) and all(r.label_index is not None for r in self.records)

    @property
    def labels(self) -> np.ndarray:
        """Class index per image, -1 where unknown."""
        return np.array(
            [-1 if r.label_index is None else r.label_index for r in self.records],
            dtype=np.int64,
        )

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def image(self, index: int) -> np.ndarray:
        record = self.records[index]
        return np.asarray(self._shards[record.shard][record.row])

    def __getitem__(self, index: int) -> tuple[np.ndarray, int, str]:
        record = self.records[index]
        label = record.label_index
        return self.image(index), (-1 if label is None else label), record.id

    def images(self, indices: list[int] | np.ndarray | None = None) -> np.ndarray:
        """Stack the given images (all by default) into one N x H x W x 3 array."""
        indices = range(len(self)) if indices is None else indices
        if self.image_shape is None:
            return np.zeros((0, 0, 0, 3), dtype=np.uint8)
        return np.stack([self.image(i) for i in indices]) if len(indices) else np.zeros(
            (0, *self.image_shape), dtype=np.uint8)

    def shard_files(self) -> Iterator[Path]:
        yield from (self.root / name for name in self._shards)

    def report(self) -> dict[str, Any]:
        path = self.root / REPORT
        return json.loads(path.read_text()) if path.exists() else {}
