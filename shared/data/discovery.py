"""Finding images in folder trees, in a deterministic order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shared.data.images import is_image_name
from shared.errors import MissingInputError


@dataclass(frozen=True)
class ImageFile:
    path: Path
    relpath: str  # relative to the root, with "/" separators: the image's stable id
    label: str | None
    channel: str | None = None  # the input it came from, where a job merges several


def _walk_images(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder) / name for name in sorted(files) if is_image_name(name))
    return sorted(found)  # by path components, the same on every file system


def _require_folder(root: Path) -> None:
    if not root.exists():
        raise MissingInputError(f"input folder {root} does not exist")
    if not root.is_dir():
        raise MissingInputError(f"input {root} is not a folder")


def list_images(root: Path) -> list[ImageFile]:
    """Every image file below `root`, unlabelled, in sorted path order."""
    root = Path(root)
    _require_folder(root)
    return [ImageFile(p, p.relative_to(root).as_posix(), None) for p in _walk_images(root)]


def list_labelled_images(root: Path) -> tuple[list[ImageFile], list[str]]:
    """An ImageFolder: `<class>/<...>/<file>`. Returns the images and the sorted class names.

    A class is a top-level folder holding at least one image (nested folders below it belong to
    it); image files directly in `root` have no class and are left out.
    """
    root = Path(root)
    _require_folder(root)
    images: list[ImageFile] = []
    classes: list[str] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _walk_images(class_dir)
        if files:
            classes.append(class_dir.name)
            images.extend(ImageFile(p, p.relative_to(root).as_posix(), class_dir.name) for p in files)
    return images, classes


def labels_from_folders(root: Path) -> bool:
    """True when `root` looks like an ImageFolder: only class folders, each holding images."""
    root = Path(root)
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    folders = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if p.is_file() and is_image_name(p.name)]
    return bool(folders) and not loose and all(_walk_images(f) for f in folders)
