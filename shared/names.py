"""The one rule for names that become file or folder names, and guarded deletion.

Pipeline step, input and output names, model package names, channel names and host names all end
up as path components (a step's run folder, a link into a job's /opt/ml, a registry folder, a
per-host file name). A name like `../..` or `/home` would point outside the folder it belongs in,
so every such name must match NAME: a letter or digit, then letters, digits, `.`, `_` or `-`, at
most 63 characters (SageMaker's own names fit). And every destructive operation checks that its
target lies inside the folder it owns before touching it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from shared.errors import UserError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
RULE = "a letter or digit, then letters, digits, '.', '_' or '-' (at most 63 characters)"


def check_name(value: object, what: str) -> str:
    """`value` if it is a valid name; otherwise a UserError naming `what` and the rule."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise UserError(f"{what} {value!r} is not a valid name: use {RULE}")
    return value


def inside(folder: Path, target: Path) -> Path:
    """`target`, checked to lie strictly inside `folder`; else RuntimeError.

    The folders above `target` are resolved, its own name is not: a link inside `folder` is
    inside, wherever it points (and only the link itself is ever removed).
    """
    target = Path(target)
    root = Path(folder).resolve()
    location = target.parent.resolve() / target.name
    if target.name in ("", ".", "..") or location == root or not location.is_relative_to(root):
        raise RuntimeError(f"refusing to touch {target}: it is not inside {folder}")
    return target


def remove_inside(folder: Path, target: Path) -> None:
    """Delete `target` (a file, a link or a folder tree), which must lie inside `folder`."""
    target = inside(folder, target)
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
