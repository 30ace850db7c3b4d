"""Where attributions are stored: one compressed .npz of float16 arrays, keyed by image id.

Ids are relative paths ("cat/0001.jpg", "x/y/c.webp#aug1"), and an .npz member name with "/" would
be a folder inside the zip. Keys are therefore the id percent-encoded with nothing left safe
(`urllib.parse.quote(id, safe="")`): reversible, unique, plain file names. Percent-encoding never
leaves a raw "@" in the key, so "<key>@true" (the attributions for the true class, when it differs
from the prediction) cannot collide with any image's own key.

The writer streams one array at a time into the zip, the way `numpy.savez_compressed` lays it out
(so `numpy.load` reads it), without holding every image's attributions in memory.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

KEY_RULE = "urllib.parse.quote(image_id, safe='')"
TRUE_CLASS_SUFFIX = "@true"


def attribution_key(image_id: str, true_class: bool = False) -> str:
    """The .npz key of an image's attributions (for its predicted class, or its true class)."""
    key = quote(image_id, safe="")
    return key + TRUE_CLASS_SUFFIX if true_class else key


def image_id_of(key: str) -> str:
    return unquote(key.removesuffix(TRUE_CLASS_SUFFIX))


class NpzWriter:
    """Append arrays to a compressed .npz one at a time; `close` finishes the zip."""

    def __init__(self, path: Path, dtype: type = np.float16) -> None:
        self.path = Path(path)
        self.dtype = dtype
        self._zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED,
                                    allowZip64=True)
        self._keys: set[str] = set()

    def add(self, key: str, array: np.ndarray) -> None:
        if key in self._keys:
            raise ValueError(f"duplicate attribution key {key!r}")
        self._keys.add(key)
        with self._zip.open(f"{key}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.ascontiguousarray(array, dtype=self.dtype),
                                      allow_pickle=False)

    def __len__(self) -> int:
        return len(self._keys)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> NpzWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
