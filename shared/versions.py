"""The library versions an artifact records, so a reader can tell what wrote it."""

from __future__ import annotations

from importlib import metadata

# Everything that decides how weights, features or statistics come out; a package not installed
# in this image is left out rather than recorded as missing.
RECORDED = ("torch", "timm", "safetensors", "numpy", "pillow", "alibi-detect")


def library_versions() -> dict[str, str]:
    versions = {}
    for dist in RECORDED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions
