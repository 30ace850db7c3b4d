"""Publishing a folder has no moment without a complete output: not on SIGTERM, and after a
SIGKILL between the two renames the next writer puts the earlier output back first.

The signal is sent from inside the publish itself, right after its first rename (the moment the
old code left nothing at the final name), so the test needs no timing.
"""

import errno
import os
import signal
from pathlib import Path

import pytest

from shared import atomic
from shared.atomic import published_folder, staging_folder
from shared.sagemaker import JobInterrupted
from shared.sagemaker.failure import SIGTERM_REASON
from shared.sagemaker.stop import SigtermInterrupts


def write_version(folder, version: str) -> None:
    (folder / "data.txt").write_text(version)
    (folder / "manifest.txt").write_text(f"{version} complete")


def contents(folder):
    return {p.name: p.read_text() for p in folder.iterdir()} if folder.is_dir() else None


@pytest.fixture
def sigterm_raises():
    handler = SigtermInterrupts(lambda: JobInterrupted(SIGTERM_REASON)).install()
    yield
    handler.uninstall()


def test_sigterm_between_the_two_renames_waits_until_the_new_folder_is_in_place(
        tmp_path, monkeypatch, sigterm_raises):
    final = tmp_path / "out"
    with published_folder(final) as staged:
        write_version(staged, "v1")
    renames = []
    real_replace = os.replace

    def replace_then_sigterm(source, target):
        real_replace(source, target)
        renames.append((source, target))
        if len(renames) == 1:  # the old folder is aside, the new one not yet in place
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(atomic.os, "replace", replace_then_sigterm)
    with pytest.raises(JobInterrupted):
        with published_folder(final) as staged:
            write_version(staged, "v2")
    assert len(renames) == 2  # both renames happened before the job stopped
    assert contents(final) == {"data.txt": "v2", "manifest.txt": "v2 complete"}


def test_a_kill_between_the_renames_leaves_the_old_folder_which_the_next_writer_puts_back(
        tmp_path):
    final = tmp_path / "out"
    with published_folder(final) as staged:
        write_version(staged, "v1")
    # What a SIGKILL after the first rename leaves: the complete v1 aside, nothing in its place.
    aside = final.with_name(f".{final.name}{atomic.OLD}0123")
    os.replace(final, aside)
    staged = staging_folder(final)  # the next run of the job starts writing ...
    assert contents(final) == {"data.txt": "v1", "manifest.txt": "v1 complete"}  # ... v1 is back
    assert not aside.exists()
    write_version(staged, "v2")
    atomic.replace_folder(staged, final)
    assert contents(final) == {"data.txt": "v2", "manifest.txt": "v2 complete"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no debris


def test_a_failed_writer_leaves_the_earlier_output_untouched(tmp_path):
    final = tmp_path / "out"
    with published_folder(final) as staged:
        write_version(staged, "v1")
    with pytest.raises(RuntimeError), published_folder(final) as staged:
        write_version(staged, "v2")
        raise RuntimeError("the job failed half way")
    assert contents(final) == {"data.txt": "v1", "manifest.txt": "v1 complete"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_mounted_output_folder_is_replaced_in_place(tmp_path, monkeypatch):
    """The SageMaker SDK's local mode mounts each processing output folder on its own: it cannot
    be renamed and its siblings are another file system, so staging happens inside it."""
    final = tmp_path / "out"
    final.mkdir()
    mounted = os.path.ismount
    monkeypatch.setattr(atomic.os.path, "ismount", lambda p: Path(p) == final or mounted(p))
    monkeypatch.setattr(atomic.os, "replace", _refusing_to_move(final, atomic.os.replace))
    with published_folder(final) as staged:
        assert staged.parent == final
        write_version(staged, "v1")
    assert contents(final) == {"data.txt": "v1", "manifest.txt": "v1 complete"}
    with published_folder(final) as staged:
        write_version(staged, "v2")
    assert contents(final) == {"data.txt": "v2", "manifest.txt": "v2 complete"}
    assert sorted(p.name for p in final.iterdir()) == ["data.txt", "manifest.txt"]  # no debris
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _refusing_to_move(mount, replace):
    """os.replace as a mount point answers: the mount itself cannot move (EBUSY), nor can anything
    cross between it and the outside (EXDEV)."""
    def guarded(src, dst):
        src, dst = Path(src), Path(dst)
        if mount in (src, dst):
            raise OSError(errno.EBUSY, "Device or resource busy", str(src))
        if (mount in src.parents) != (mount in dst.parents):
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        return replace(src, dst)
    return guarded
