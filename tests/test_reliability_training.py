"""Training jobs interrupted as spot capacity is: SIGTERM at random points, restart, three times over.

Each SIGTERM is sent the moment the job reports a seeded choice of event (its start, an epoch's
end, the end of training), never after a guessed delay, so the interruptions land on an idle and on
a saturated machine alike.

The model must still come out, every epoch must run exactly once across the restarts, and a
checkpoint must never be readable half-written, even when the process is SIGKILLed mid-write.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
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


# Lines the job itself prints, which the interruptions wait for.
STARTED = re.compile(r"training job: \d+ training and \d+ validation images")
WRITING = re.compile(r"training finished; evaluating the best epoch's weights")


def start(base) -> subprocess.Popen:
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "algorithm", "train"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def epochs_printed(lines: list[str]) -> list[int]:
    return [int(e) for e, _ in EPOCH_LINE.findall("".join(lines))]


def choose_point(rng, remaining: int, last: bool) -> tuple[str, int]:
    """Where to interrupt, as an event the job reports, with work still to do after it.

    ("start", 0): the job's first line (its data is open; model, trainer and epochs still ahead).
    ("epoch", k): the k-th epoch line of this run, k < remaining (at least one more epoch ahead).
    ("writing", 0): the line after the final epoch (evaluation and the model files still ahead).
    """
    if last:
        return "writing", 0
    return rng.choice([("start", 0)] + [("epoch", k) for k in range(1, remaining)])


def reached(point: tuple[str, int], lines: list[str]) -> bool:
    kind, k = point
    if kind == "epoch":
        return len(epochs_printed(lines)) >= k
    return bool((STARTED if kind == "start" else WRITING).search(lines[-1])) if lines else False


def interrupt(proc: subprocess.Popen, point: tuple[str, int]) -> tuple[list[str], float]:
    """Read the job's output until it reports `point`, send SIGTERM at once; the run's output."""
    lines: list[str] = []
    while not reached(point, lines):
        line = proc.stdout.readline()
        assert line, f"the job ended before {point}: {''.join(lines)[-3000:]}"
        lines.append(line)
    sent = time.monotonic()
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
        point = choose_point(rng, EPOCHS - len(printed), last=number == INTERRUPTIONS - 1)
        lines, stop_s = interrupt(start(base), point)
        printed += epochs_printed(lines)
        failure = base / "output" / "failure"
        reason = failure.read_text() if failure.exists() else ""
        outcomes.append({"at": point, "stop_s": round(stop_s, 2), "epochs_done": len(printed),
                         "reason": reason[:60]})
        assert "SIGTERM" in reason, f"interruption {number + 1} at {point}: {''.join(lines)[-3000:]}"
        assert stop_s < STOP_LIMIT_S
        assert not (base / "model" / "model.json").exists()
        assert checkpoint_history(base) == printed  # the checkpoint holds exactly what ran
        if "completed epoch" in reason:  # stopped inside the training loop
            assert f"after {len(printed)} completed epoch" in reason
    print("interruptions:", json.dumps(outcomes))
    assert len(printed) == EPOCHS  # the last interruption came after the final epoch
    final = start(base)
    lines = final.stdout.readlines()
    assert final.wait(timeout=600) == 0, "".join(lines)[-3000:]
    printed += epochs_printed(lines)
    assert printed == list(range(1, EPOCHS + 1)), printed  # none lost, none repeated
    rows = (base / "output" / "data" / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, EPOCHS + 1))
    assert checkpoint_history(base) == printed
    assert not (base / "output" / "failure").exists()
    assert json.loads((base / "model" / "evaluation.json").read_text())["evaluated_on"] == "validation"
    assert load_artifact(base / "model").config.architecture == TINY_ARCHITECTURE


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


def test_a_sigterm_while_fit_sets_up_the_data_stops_the_job_before_any_epoch(tmp_path):
    """StopTrainingJob while the data loads: inside fit, but before Lightning installs its own
    SIGTERM handler (which then wraps run_job's). Lightning never hears of that signal; the job
    must still stop before training, not run every epoch and stop at the end."""
    import pytorch_lightning as pl
    from pytorch_lightning.utilities.exceptions import SIGTERMException
    from torch.utils.data import DataLoader, TensorDataset

    from algorithm.callbacks import StopIfSigtermCameEarly
    from shared.sagemaker import run_job
    from shared.sagemaker.failure import JobInterrupted
    from shared.sagemaker.stop import sigterm_deferred

    steps = []

    class Data(pl.LightningDataModule):
        def setup(self, stage: str) -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the data loads

        def train_dataloader(self) -> DataLoader:
            return DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=2)

    class Model(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def training_step(self, batch, _):
            steps.append(self.current_epoch)
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def job() -> None:  # as algorithm/train.py runs fit
        trainer = pl.Trainer(max_epochs=1000, callbacks=[StopIfSigtermCameEarly()], logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=tmp_path)
        with sigterm_deferred():
            try:
                trainer.fit(Model(), datamodule=Data())
            except SIGTERMException:
                raise JobInterrupted("stopped by SIGTERM") from None

    assert run_job(job, tmp_path / "failure") == 143
    assert steps == []
