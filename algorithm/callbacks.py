"""Lightning callbacks for what a SageMaker training job owes its user."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from algorithm.metrics import EPOCH_METRICS
from shared.atomic import remove_stale_temporaries, write_atomic
from shared.sagemaker.stop import sigterm_received


class EpochMetrics(pl.Callback):
    """One line per epoch for people and for SageMaker metric definitions, and a CSV history.

    Line format: `epoch=3 train_loss=0.4100 … val_loss=0.3800 val_nll=0.3500 val_accuracy=0.9120
    lr=0.000500`.
    The history travels inside checkpoints, so a resumed job's CSV still has every epoch.
    """

    def __init__(self, csv_path: Path) -> None:
        self.csv_path = csv_path
        self.history: list[dict[str, float]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._lr = float(trainer.optimizers[0].param_groups[0]["lr"])  # the rate this epoch uses

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Validation has run by now; the epoch's train_loss is in callback_metrics too.
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        row: dict[str, float] = {"epoch": trainer.current_epoch + 1}
        for name in EPOCH_METRICS:
            if name in metrics:
                row[name] = round(float(metrics[name]), 6)
        row["lr"] = self._lr
        self.history = [h for h in self.history if h["epoch"] != row["epoch"]] + [row]
        text = " ".join(f"{k}={v:.4f}" if k != "lr" else f"lr={v:.6f}"
                        for k, v in row.items() if k != "epoch")
        print(f"epoch={row['epoch']} {text}", flush=True)
        self.write_csv()

    def write_csv(self) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["epoch", *EPOCH_METRICS, "lr"])
                writer.writeheader()
                writer.writerows(self.history)

        write_atomic(self.csv_path, write)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


class FreezeBackbone(pl.Callback):
    """Train only the classifier for the first `epochs` epochs (a new head on a trained backbone)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.set_backbone_trainable(trainer.current_epoch >= self.epochs)


class StopIfSigtermCameEarly(pl.Callback):
    """Lightning forgets a SIGTERM that came before fit installed its own handler: stop here."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if sigterm_received():
            raise SIGTERMException


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written beside their name and renamed: a kill mid-write never corrupts one."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        save = super().save_checkpoint
        write_atomic(Path(path), lambda tmp: save(checkpoint, tmp, storage_options))


def remove_partial_checkpoints(folder: Path) -> list[Path]:
    """Half-written checkpoints a SIGKILL left behind; SageMaker would keep syncing them to S3."""
    return remove_stale_temporaries(folder, "*.ckpt")
