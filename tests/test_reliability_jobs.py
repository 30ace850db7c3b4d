"""Processing, monitoring and explainability jobs SIGKILLed while they write their output.

Each job is killed at a seeded random moment after it starts writing (its hidden staging folder
appears). Whatever is left must never read as a complete output unless it is one, and running the
job again must give the complete, correct output with no debris from the killed run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shared.data import ProcessedDataset
from shared.drift import DriftDetector
from shared.sagemaker import run_job
from shared.sagemaker.stop import sigterm_deferred, sigterm_received
from tests.conftest import ROOT, run_entrypoint
from tests.reliability import seeded, write_processed, write_tiny_model

SPLITS = ("train", "validation", "test")


def start(module: str, *args: str, base: Path) -> subprocess.Popen:
    """The job in the background, its log in a file (a pipe nobody reads could stall it)."""
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONPATH": str(ROOT)}
    with open(log_of(base), "w") as log:
        return subprocess.Popen([sys.executable, "-m", module, *args], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=log)


def log_of(base: Path) -> Path:
    return base.parent / f"{base.name}.log"


def staging(output: Path) -> list[Path]:
    return [p for p in output.iterdir() if ".partial-" in p.name] if output.is_dir() else []


def staged_files(output: Path) -> int:
    """Files the job has written so far into its staging folders."""
    return sum(1 for folder in staging(output) for p in folder.rglob("*") if p.is_file())


def complete_run(module: str, args: tuple[str, ...], base: Path, output: Path) -> int:
    """Run the job whole; how many files its staging folders held when they were published."""
    result = run_entrypoint(module, *args, base=base)
    assert result.returncode == 0, result.stderr[-2000:]
    published = [p for p in output.iterdir() if not p.name.startswith(".") and p.is_dir()]
    return sum(1 for folder in published for p in folder.rglob("*") if p.is_file())


def kill_mid_write(module: str, args: tuple[str, ...], base: Path, output: Path, files: int,
                   rng) -> int:
    """SIGKILL as soon as the job has staged a seeded number of its `files` (fewer than all).

    Returns how many earlier attempts finished (and so left a complete output in place)."""
    for attempt in range(6):
        wanted = rng.randint(0, max(0, files // 2))
        proc = start(module, *args, base=base)
        deadline = time.monotonic() + 300
        while not staging(output) or staged_files(output) < wanted:
            if proc.poll() is not None:
                break  # it finished (or failed) first
            assert time.monotonic() < deadline, log_of(base).read_text()[-2000:]
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if staging(output):  # it died with its output unpublished: a kill mid-write
            print(f"{module}: killed after {staged_files(output)} of {files} staged files"
                  f" (attempt {attempt + 1}); visible: {visible(output)}")
            return attempt
        assert proc.returncode in (0, -signal.SIGKILL), log_of(base).read_text()[-2000:]
    pytest.fail(f"{module} finished writing before every kill")


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def debris(base: Path) -> list[str]:
    """Hidden staging, scratch or replaced folders anywhere in the job's processing/ tree."""
    return sorted(str(p.relative_to(base)) for p in (base / "processing").rglob(".*")
                  if any(tag in p.name for tag in (".partial-", ".old-", ".scratch-")))


def same_dataset(a: ProcessedDataset, b: ProcessedDataset) -> bool:
    return a.records == b.records and a.classes == b.classes and np.array_equal(a.images(), b.images())


def processing_job(base: Path, digits_folder: Path) -> Path:
    (base / "processing" / "input").mkdir(parents=True)
    (base / "processing" / "input" / "data").symlink_to(digits_folder)
    return base / "processing" / "output"


def test_processing_killed_mid_write_then_rerun(digits_folder, tmp_path):
    rng = seeded("processing-sigkill")
    args = ("train", "--image-size", "32", "--augment-copies", "1", "--max-shard-mb", "0.5")
    clean = processing_job(tmp_path / "clean", digits_folder)
    files = complete_run("processing", args, tmp_path / "clean", clean)
    base = tmp_path / "opt_ml"
    output = processing_job(base, digits_folder)
    if kill_mid_write("processing", args, base, output, files, rng) == 0:
        assert "report" not in visible(output)  # the job's own report is written last
    for split in set(visible(output)) & set(SPLITS):  # a split that is visible is whole
        data = ProcessedDataset(output / split)
        assert len(data) == data.report()["images"] == sum(data.report()["class_counts"].values())
        assert same_dataset(data, ProcessedDataset(clean / split))

    rerun = run_entrypoint("processing", *args, base=base)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    for split in SPLITS:
        assert same_dataset(ProcessedDataset(output / split), ProcessedDataset(clean / split))
    assert json.loads((output / "report" / "report.json").read_text())["images_used"] == 1797
    assert debris(base) == []


@pytest.fixture(scope="module")
def reference_images(digits_folder, tmp_path_factory):
    """300 of the digits as image files, a small monitoring reference."""
    folder = tmp_path_factory.mktemp("reference") / "digits"
    for path in sorted(digits_folder.rglob("*.png"))[::6]:
        target = folder / path.relative_to(digits_folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return folder


def test_monitoring_killed_while_replacing_its_detector_then_rerun(reference_images, tmp_path):
    rng = seeded("monitoring-sigkill")
    base = tmp_path / "opt_ml"
    (base / "processing" / "input").mkdir(parents=True)
    (base / "processing" / "input" / "data").symlink_to(reference_images)
    args = ("train", "--image-size", "24", "--permutations", "20", "--workers", "1")
    detector = base / "processing" / "output" / "detector"
    files = complete_run("monitoring", args, base, detector.parent)
    original = DriftDetector.load(detector).config.detector_id
    kill_mid_write("monitoring", args, base, detector.parent, files, rng)
    if detector.exists():  # the old detector, or the new one whole: the same content either way
        assert DriftDetector.load(detector).config.detector_id == original

    rerun = run_entrypoint("monitoring", *args, base=base)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert DriftDetector.load(detector).config.detector_id == original
    assert debris(base) == []


def explanation_files(folder: Path) -> dict[str, object]:
    summary = json.loads((folder / "summary.json").read_text())
    with np.load(folder / "attributions.npz") as stored:
        arrays = {key: stored[key] for key in stored.files}
    assert len(arrays) == summary["totals"]["images_explained"] + summary["totals"][
        "true_class_attributions"]
    return {"images": [(r["id"], r["prediction"]) for r in summary["images"]], "arrays": arrays}


def test_explainability_killed_while_explaining_then_rerun(tmp_path):
    rng = seeded("explainability-sigkill")
    base = tmp_path / "opt_ml"
    inputs = base / "processing" / "input"
    write_processed(tmp_path / "processed", 32, {"data": slice(0, 40)})
    inputs.mkdir(parents=True)
    (inputs / "data").symlink_to(tmp_path / "processed" / "data")
    write_tiny_model(inputs / "model")
    args = ("serve", "--n-steps", "16", "--gallery-size", "4", "--workers", "1")
    output = base / "processing" / "output" / "explanations"
    files = complete_run("explainability", args, base, output.parent)
    expected = explanation_files(output)
    kill_mid_write("explainability", args, base, output.parent, files, rng)
    if output.exists():  # the earlier run's explanations, whole
        assert explanation_files(output)["images"] == expected["images"]

    rerun = run_entrypoint("explainability", *args, base=base)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    got = explanation_files(output)
    assert got["images"] == expected["images"]
    assert all(np.array_equal(got["arrays"][k], expected["arrays"][k]) for k in expected["arrays"])
    assert debris(base) == []


def test_sigterm_anywhere_in_a_job_ends_it_with_143_and_a_reason(tmp_path):
    """Python's default would die without a reason (and as a container's PID 1, not die at all)."""
    failure = tmp_path / "failure"
    before = signal.getsignal(signal.SIGTERM)

    def job():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # never reached: the signal interrupts the job here
        raise AssertionError("SIGTERM did not stop the job")

    assert run_job(job, failure) == 143
    assert failure.read_text().startswith("stopped by SIGTERM")
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_deferred_sigterm_stops_the_job_when_the_deferring_code_is_done(tmp_path):
    steps = []

    def job():
        with sigterm_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("finished the step")  # code that stops at safe points runs on
            assert sigterm_received()
        steps.append("after")

    assert run_job(job, tmp_path / "failure") == 143
    assert steps == ["finished the step"]


def test_a_forked_worker_still_dies_of_sigterm_at_once(tmp_path):
    def job():
        child = os.fork()
        if child == 0:  # a decoding pool worker, for instance
            time.sleep(30)
            os._exit(0)
        os.kill(child, signal.SIGTERM)  # at once: Python alone would drop it (held across fork)
        _, status = os.waitpid(child, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM

    assert run_job(job, tmp_path / "failure") == 0
