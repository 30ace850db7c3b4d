"""The local model registry: `<registry>/<name>/v<N>/`, versions never overwritten, each with an
approval status as a SageMaker model package has one.

A version is registered `PendingManualApproval` (unless its register step says otherwise); a person
approves or rejects it (`python -m pipelines approve|reject NAME VERSION`), and the batch pipeline
uses the latest approved version when it is given no model. `metadata.json` in each version holds
its status and the history of its status changes; changes to one model's versions are serialised
by a lock file, and every write is atomic.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.atomic import write_json_atomic
from shared.choices import MODEL_DRIFT_FOLDER
from shared.errors import UserError
from shared.evaluation import read_accuracy
from shared.names import check_name

PENDING, APPROVED, REJECTED = "PendingManualApproval", "Approved", "Rejected"
STATUSES = (PENDING, APPROVED, REJECTED)  # SageMaker's ModelApprovalStatus values


class RegistryError(UserError):
    """A registry request that cannot be met; the message says what there is."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Version:
    number: int
    folder: Path
    metadata: dict[str, Any]

    @property
    def status(self) -> str:
        return self.metadata.get("approval_status", PENDING)  # versions from before approval


class Registry:
    """One model package group: `<root>/<name>/`."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = check_name(str(name), "model package name")
        self.folder = Path(root) / self.name

    def versions(self) -> list[Version]:
        found = []
        for path in self.folder.glob("v*"):
            meta = path / "metadata.json"
            if path.name[1:].isdigit() and meta.is_file():
                found.append(Version(int(path.name[1:]), path, _read(meta)))
        return sorted(found, key=lambda v: v.number)

    def version(self, number: int) -> Version:
        for version in self.versions():
            if version.number == number:
                return version
        have = ", ".join(f"v{v.number}" for v in self.versions()) or "none"
        raise RegistryError(f"model {self.name} has no version {number} in {self.folder.parent}"
                            f" (versions: {have})")

    def latest_approved(self) -> Version | None:
        approved = [v for v in self.versions() if v.status == APPROVED]
        return approved[-1] if approved else None

    def retrained_from(self, model: Path) -> list[Version]:
        """The versions whose training started from `model` (their warm start)."""
        wanted = str(Path(model).resolve())
        return [v for v in self.versions() if v.metadata.get("warm_start") == wanted]

    def describe(self) -> str:
        return ", ".join(f"v{v.number} {v.status}" for v in self.versions()) or "no versions"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def set_status(self, number: int, status: str, note: str = "") -> Version:
        _check_status(status)
        if not self.folder.is_dir():  # a mistyped name must not create an empty model
            models = sorted(p.name for p in self.folder.parent.glob("*") if p.is_dir())
            raise RegistryError(f"no model {self.name} in {self.folder.parent} (models:"
                                f" {', '.join(models) or 'none'})")
        with self._locked():
            version = self.version(number)
            metadata = dict(version.metadata)
            metadata["approval_status"] = status
            metadata["approval_history"] = [*metadata.get("approval_history", []),
                                            {"status": status, "time": _now(), "note": note}]
            write_json_atomic(version.folder / "metadata.json", metadata)
        return Version(number, version.folder, metadata)

    def register(self, inputs: dict[str, Path], run_dir: Path, status: str = PENDING,
                 warm_start: Path | None = None) -> Version:
        """Copy `inputs` into a new `v<N>`: staged beside it, then renamed into place whole. A
        `detector` input is also packaged inside the `model` as its `drift/` folder (the server
        then tests traffic online)."""
        _check_status(status)
        self.folder.mkdir(parents=True, exist_ok=True)
        staged = self.folder / f".staging-{uuid.uuid4().hex}"
        staged.mkdir()
        try:
            for name, source in inputs.items():
                if source.is_dir():
                    shutil.copytree(source, staged / name, symlinks=False)
                else:
                    shutil.copy(source, staged / name)
            if (staged / "model").is_dir() and (staged / "detector").is_dir():
                shutil.copytree(staged / "detector", staged / "model" / MODEL_DRIFT_FOLDER)
            evaluation = staged / "model" / "evaluation.json"
            accuracy = read_accuracy(evaluation) if evaluation.exists() else None
            with self._locked():
                numbers = [int(p.name[1:]) for p in self.folder.glob("v*") if p.name[1:].isdigit()]
                number = max(numbers, default=0) + 1
                metadata = {"model_name": self.name, "version": number, "registered": _now(),
                            "run_dir": str(run_dir),
                            "sources": {k: str(v.resolve()) for k, v in inputs.items()},
                            "accuracy": accuracy, "approval_status": status,
                            "warm_start": str(Path(warm_start).resolve()) if warm_start else None,
                            "approval_history": [{"status": status, "time": _now(),
                                                  "note": "registered"}]}
                write_json_atomic(staged / "metadata.json", metadata)
                final = self.folder / f"v{number}"
                os.rename(staged, final)
                write_json_atomic(self.folder / "latest.json", metadata)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return Version(number, final, metadata)


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise RegistryError(f"approval status {status!r} is not one of {', '.join(STATUSES)}")


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
