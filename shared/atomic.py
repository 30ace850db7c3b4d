"""Writing so that a reader never sees half a file or half a folder, whenever the writer dies.

A file is written to a hidden, unique sibling (`.<name>.<random>.tmp`) and renamed over its final
name: a rename within one file system is atomic. A folder is filled under a hidden sibling
(`.<name>.partial-<random>`) and renamed into place only when whole; an earlier folder of the same
name is first renamed aside (`.<name>.old-<random>`) and removed after. What a killed writer leaves
behind is always hidden, and the next writer of the same name removes it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"
PARTIAL = ".partial-"
OLD = ".old-"


def temporary_sibling(path: Path) -> Path:
    """A unique hidden name beside `path`, on the same file system."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")


def write_atomic(path: Path, write: Callable[[Path], Any]) -> Path:
    """`write(tmp)` fills a temporary sibling, which then replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(path: Path, data: Any) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def stale_temporaries(folder: Path, name_glob: str = "*") -> list[Path]:
    """Temporary files a killed writer left in `folder` for names matching `name_glob`."""
    folder = Path(folder)
    return sorted(folder.glob(f".{name_glob}.*{TMP_SUFFIX}")) if folder.is_dir() else []


def remove_stale_temporaries(folder: Path, name_glob: str = "*") -> list[Path]:
    stale = stale_temporaries(folder, name_glob)
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def staging_folder(final: Path) -> Path:
    """A hidden sibling of `final` to write into (same file system, so the rename is atomic).

    Hidden siblings that a killed run of the job left behind are removed first: one job writes a
    folder at a time (two at once would replace each other's output anyway).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for pattern in (f".{final.name}{PARTIAL}*", f".{final.name}{OLD}*"):
        for stale in final.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    staged = final.with_name(f".{final.name}{PARTIAL}{uuid.uuid4().hex}")
    staged.mkdir()
    return staged


def replace_folder(staged: Path, final: Path) -> None:
    """Move a fully written folder to its final name, replacing any earlier one."""
    if final.exists():
        old = final.with_name(f".{final.name}{OLD}{uuid.uuid4().hex}")
        os.replace(final, old)
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)


@contextmanager
def published_folder(final: Path) -> Iterator[Path]:
    """Yield a staging folder; publish it as `final` when the block ends, remove it if it fails."""
    final = Path(final)
    staged = staging_folder(final)
    try:
        yield staged
        replace_folder(staged, final)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
