"""Writing so that a reader never sees half a file or half a folder, whenever the writer dies.

A file is written to a hidden, unique sibling (`.<name>.<random>.tmp`) and renamed over its final
name: a rename within one file system is atomic. A folder is filled under a hidden sibling
(`.<name>.partial-<random>`) and renamed into place only when whole; an earlier folder of the same
name is first renamed aside (`.<name>.old-<random>`) and removed after. SIGTERM waits until both
renames are done; a SIGKILL between them leaves only the `.old-` folder, which the next writer of
the same name puts back in place before anything else. What a killed writer leaves behind is
always hidden, and the next writer of the same name removes it.
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

from shared.sagemaker.stop import sigterm_deferred

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
    folder at a time (two at once would replace each other's output anyway). An earlier complete
    output that a kill left renamed aside, with nothing in its place, is put back first.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_replaced(final)
    home = _home(final)
    for pattern in (f".{final.name}{PARTIAL}*", f".{final.name}{OLD}*"):
        for stale in home.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    staged = home / f".{final.name}{PARTIAL}{uuid.uuid4().hex}"
    staged.mkdir()
    return staged


def _mounted(final: Path) -> bool:
    """`final` is a mount point: it cannot be renamed, and a sibling is on another file system
    (the SageMaker SDK's local mode mounts each processing output folder on its own)."""
    return final.is_dir() and os.path.ismount(final)


def _home(final: Path) -> Path:
    """Where `final`'s staging and set-aside folders live: beside it, or inside it if mounted."""
    return final if _mounted(final) else final.parent


def recover_replaced(final: Path) -> Path | None:
    """Put back the newest `.old-` copy of `final` when `final` itself is missing (a writer was
    killed between its two renames); the copy put back, or None."""
    if final.exists():
        return None
    olds = sorted(final.parent.glob(f".{final.name}{OLD}*"), key=lambda p: p.stat().st_mtime_ns)
    if not olds:
        return None
    os.replace(olds[-1], final)
    return olds[-1]


def replace_folder(staged: Path, final: Path) -> None:
    """Move a fully written folder to its final name, replacing any earlier one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if _mounted(final):
        _replace_contents(staged, final)
        return
    old = final.with_name(f".{final.name}{OLD}{uuid.uuid4().hex}")
    with sigterm_deferred():  # no moment without a complete folder at `final`, bar SIGKILL
        replaced = final.exists()
        if replaced:
            os.replace(final, old)
        os.replace(staged, final)
    if replaced:
        shutil.rmtree(old, ignore_errors=True)


def _replace_contents(staged: Path, final: Path) -> None:
    """A mounted `final` keeps its place: its entries are set aside inside it, the staged ones
    moved in (each a rename on the mount's file system), then the set-aside ones removed."""
    old = final / f".{final.name}{OLD}{uuid.uuid4().hex}"
    old.mkdir()
    with sigterm_deferred():
        for entry in list(final.iterdir()):
            if entry not in (staged, old):
                os.replace(entry, old / entry.name)
        for entry in list(staged.iterdir()):
            os.replace(entry, final / entry.name)
    staged.rmdir()
    shutil.rmtree(old, ignore_errors=True)


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
