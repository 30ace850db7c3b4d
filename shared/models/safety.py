"""Reading model files without trusting them: safetensors only, tarballs extracted defensively.

Nothing from an artifact is ever unpickled: `torch.load` of a stranger's file can run arbitrary code.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from shared.errors import MissingInputError, UserError

PICKLE_SIGNATURES = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+, torch.save's zip container
MAX_ARTIFACT_BYTES = 4 * 1024**3


class UnsafeArtifactError(UserError):
    """An artifact refused because reading it could run code or write outside its folder."""


def read_safetensors_state(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"weights file {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(PICKLE_SIGNATURES):
        raise UnsafeArtifactError(
            f"{path} is a pickle / torch.save file, which is refused because loading it can run"
            " code; convert it to safetensors (safetensors.torch.save_file)"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnsafeArtifactError(f"{path} is not a valid safetensors file: {exc}") from None


def safe_extract(archive: Path, dest: Path, *, allowed: frozenset[str] | None = None,
                 max_bytes: dict[str, int] | None = None) -> list[Path]:
    """Extract regular files of a tar(.gz) into `dest`, refusing anything that could escape it.

    Absolute names, `..`, links, devices, a file name given twice and oversized content are refused;
    `allowed` limits which file names (base names) are extracted at all, and `max_bytes` bounds
    some of them by name, checked from the archive's header before a byte is written.
    """
    dest = Path(dest).resolve()
    extracted = []
    total = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                name = member.name
                parts = Path(name).parts
                if name.startswith("/") or ".." in parts:
                    raise UnsafeArtifactError(f"{archive}: entry {name!r} points outside the archive")
                if member.issym() or member.islnk():
                    raise UnsafeArtifactError(f"{archive}: entry {name!r} is a link, which is refused")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise UnsafeArtifactError(f"{archive}: entry {name!r} is not a regular file")
                if allowed is not None and Path(name).name not in allowed:
                    continue
                limit = (max_bytes or {}).get(Path(name).name)
                if limit is not None and member.size > limit:
                    raise UnsafeArtifactError(f"{archive}: {name} is {member.size:,} bytes, larger"
                                              f" than the {limit:,} it may be")
                total += member.size
                if total > MAX_ARTIFACT_BYTES:
                    raise UnsafeArtifactError(f"{archive}: content larger than {MAX_ARTIFACT_BYTES:,} bytes")
                target = (dest / Path(name).name).resolve()
                if target.parent != dest:
                    raise UnsafeArtifactError(f"{archive}: entry {name!r} points outside the archive")
                if target in extracted:  # which copy would win depends on the order: refuse both
                    raise UnsafeArtifactError(f"{archive}: holds {target.name} twice ({name!r} again)")
                source = tar.extractfile(member)
                if source is None:
                    continue
                with source, open(target, "wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
                extracted.append(target)
    except tarfile.TarError as exc:
        raise UnsafeArtifactError(f"{archive} is not a readable tar archive: {exc}") from None
    return extracted
