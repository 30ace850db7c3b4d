"""Training jobs interrupted as spot capacity is: SIGTERM at random points, restart, three times over.

The model must still come out, every epoch must run exactly once across the restarts, and a
checkpoint must never be readable half-written, even when the process is SIGKILLed mid-write.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import torch

from algorithm.callbacks import AtomicCheckpointIO, remove_partial_checkpoints
from shared.models import load_artifact
from tests.conftest import ROOT, training_job
from tests.reliability import TINY_ARCHITECTURE, seeded, write_processed
from tests.test_algorithm_train import EPOCH_LINE

EPOCHS = 4
HYPERPARAMETERS = {"model_name": TINY_ARCHITECTURE, "epochs": str(EPOCHS), "batch_size": "32",
                   "learning_rate": "0.005"}
INTERRUPTIONS = 3
STOP_LIMIT_S = 30  # SIGTERM stops after the current batch; SageMaker's SIGKILL comes at 120 s


def start(base) -> subprocess.Popen:
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "algorithm", "train"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def epochs_printed(lines: list[str]) -> list[int]:
    return [int(e) for e, _ in EPOCH_LINE.findall("".join(lines))]


def interrupt(proc: subprocess.Popen, lines_to_wait: int, delay: float) -> tuple[list[str], float]:
    """Let `lines_to_wait` epoch lines appear, wait `delay` s, send SIGTERM; the run's output."""
    lines = []
    while len(epochs_printed(lines)) < lines_to_wait and (line := proc.stdout.readline()):
        lines.append(line)
    time.sleep(delay)
    sent = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    lines += proc.stdout.readlines()
    proc.wait(timeout=120)
    return lines, time.monotonic() - sent


def checkpoint_history(base) -> list[int]:
    """Epochs recorded in checkpoints/last.ckpt (it must load: it is never half-written)."""
    folder = base / "checkpoints"
    assert not list(folder.glob(".*.tmp")), "a partial checkpoint was left behind"
    last = folder / "last.ckpt"
    if not last.exists():
        return []
    state = torch.load(last, map_location="cpu", weights_only=True)
    return [int(row["epoch"]) for row in state["callbacks"]["EpochMetrics"]["history"]]


def test_three_random_sigterms_then_a_restart_train_every_epoch_exactly_once(tmp_path):
    rng = seeded("training-sigterm")
    processed = write_processed(tmp_path / "processed", 16,
                                {"train": slice(0, 240), "validation": slice(240, 320)})
    base = training_job(tmp_path / "opt_ml", processed, HYPERPARAMETERS, ("train", "validation"))
    printed: list[int] = []
    outcomes = []
    for number in range(INTERRUPTIONS):
        # 0 lines: the delay counts from the start (imports, data, model); 1: from an epoch's end;
        # the last one lands just after the final epoch (checkpoint, evaluation, model writing).
        if number < INTERRUPTIONS - 1:
            lines_to_wait, delay = rng.choice([0, 1]), round(rng.uniform(0.2, 3.0), 2)
        else:
            lines_to_wait, delay = EPOCHS - len(printed), round(rng.uniform(0.0, 0.15), 2)
        lines, stop_s = interrupt(start(base), lines_to_wait, delay)
        printed += epochs_printed(lines)
        proc_reason = (base / "output" / "failure").read_text() if (
            base / "output" / "failure").exists() else ""
        outcomes.append({"wait_lines": lines_to_wait, "delay_s": delay, "stop_s": round(stop_s, 2),
                         "epochs_done": len(printed), "reason": proc_reason[:60]})
        if "SIGTERM" not in proc_reason:  # the job finished before the signal: nothing to resume
            break
        assert stop_s < STOP_LIMIT_S
        assert not (base / "model" / "model.json").exists()
        assert checkpoint_history(base) == printed  # the checkpoint holds exactly what ran
        if "completed epoch" in proc_reason:  # stopped inside the training loop
            assert f"after {len(printed)} completed epoch" in proc_reason
    print("interruptions:", json.dumps(outcomes))
    final = start(base)
    lines = final.stdout.readlines()
    assert final.wait(timeout=600) == 0
    printed += epochs_printed(lines)
    assert printed == list(range(1, EPOCHS + 1)), printed  # none lost, none repeated
    rows = (base / "output" / "data" / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, EPOCHS + 1))
    assert checkpoint_history(base) == printed
    assert not (base / "output" / "failure").exists()
    assert json.loads((base / "model" / "evaluation.json").read_text())["evaluated_on"] == "validation"
    assert load_artifact(base / "model")[1].architecture == TINY_ARCHITECTURE
    assert sum("SIGTERM" in o["reason"] for o in outcomes) == INTERRUPTIONS


KILLS = 8


def save_checkpoints_forever(path) -> None:
    """Checkpoint after checkpoint, each one's tensor filled with its own number.

    Runs in a forked child: numpy fills the tensor, since torch's OpenMP pool does not survive fork.
    """
    io = AtomicCheckpointIO()
    values = np.empty(8_000_000, dtype=np.float32)  # 32 MB: writing dominates each round
    for number in range(10**9):
        values.fill(number)
        io.save_checkpoint({"number": number, "weights": torch.from_numpy(values)}, path)


def test_a_checkpoint_killed_mid_write_never_reads_as_corrupt(tmp_path):
    rng = seeded("checkpoint-sigkill")
    path = tmp_path / "last.ckpt"
    fork = multiprocessing.get_context("fork")
    loaded = []
    for _ in range(KILLS):
        writer = fork.Process(target=save_checkpoints_forever, args=(path,), daemon=True)
        written = path.stat().st_mtime_ns if path.exists() else 0
        writer.start()
        deadline = time.monotonic() + 30
        while (path.stat().st_mtime_ns if path.exists() else 0) == written:  # one whole save
            assert time.monotonic() < deadline, "the writer saved nothing"
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.3))
        before = set(tmp_path.glob(".*.tmp"))
        while not set(tmp_path.glob(".*.tmp")) - before:  # kill while a save is being written
            assert time.monotonic() < deadline, "the writer stopped saving"
            time.sleep(0.001)
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        if path.exists():
            state = torch.load(path, weights_only=True)
            assert torch.all(state["weights"] == state["number"])  # whole, not torn
            loaded.append(state["number"])
    partial = sorted(p.name for p in tmp_path.glob(".*.tmp"))
    print(f"{KILLS} kills: checkpoints read back {loaded}, {len(partial)} partial files left")
    assert len(loaded) == KILLS and partial  # some kills did land mid-write
    assert remove_partial_checkpoints(tmp_path) and not list(tmp_path.glob(".*.tmp"))
    assert torch.load(path, weights_only=True)["number"] == loaded[-1]
