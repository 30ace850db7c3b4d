"""The LightningModule in process: what each epoch's training figures are made of."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from algorithm.hyperparameters import Hyperparameters
from algorithm.module import Classifier
from shared.models import ImageClassifier

IMAGES, BATCH = 70, 32  # three batches an epoch, the last one short (6 images)


class Recorder(pl.Callback):
    """Each training batch's loss, logits and labels, and what the module logged at epoch end."""

    def __init__(self, module: Classifier) -> None:
        self.batches: list[tuple[float, torch.Tensor, torch.Tensor]] = []
        self.epochs: list[dict[str, float]] = []
        self._logits = None
        module.classifier.register_forward_hook(self._keep)

    def _keep(self, _module, _inputs, output) -> None:
        self._logits = output.detach().clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches.append((float(outputs["loss"]), self._logits, batch[1]))

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # where EpochMetrics reads them
        self.epochs.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def expected(batches) -> tuple[float, float]:
    """The epoch's loss averaged over images (not batches), and its accuracy."""
    sizes = [len(labels) for _, _, labels in batches]
    loss = sum(loss * n for (loss, _, _), n in zip(batches, sizes, strict=True)) / sum(sizes)
    correct = sum(int((logits.argmax(1) == labels).sum()) for _, logits, labels in batches)
    return loss, correct / sum(sizes)


def fit(module: Classifier, recorder: Recorder, **limits) -> None:
    torch.manual_seed(1)
    data = TensorDataset(torch.rand(IMAGES, 3, 32, 32), torch.randint(0, 3, (IMAGES,)))
    pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
               callbacks=[recorder], **limits).fit(module, DataLoader(data, batch_size=BATCH))


@pytest.fixture
def module() -> Classifier:
    torch.manual_seed(0)
    hp = Hyperparameters(lr_scheduler="none", label_smoothing=0.0, learning_rate=0.01)
    return Classifier(ImageClassifier.create("resnet10t", ["a", "b", "c"], 32), hp)


def test_each_epoch_logs_its_own_batches_loss_and_accuracy(module):
    recorder = Recorder(module)
    fit(module, recorder, max_epochs=2)
    assert len(recorder.batches) == 6 and len(recorder.epochs) == 2
    for epoch, logged in enumerate(recorder.epochs):
        loss, accuracy = expected(recorder.batches[3 * epoch:3 * epoch + 3])
        assert logged["train_loss"] == pytest.approx(loss, rel=1e-6)
        assert logged["train_accuracy"] == pytest.approx(accuracy, rel=1e-6)


def test_an_epoch_cut_short_does_not_leak_into_the_next_fit(module):
    """The learning-rate finder trains a few steps of an epoch before the real fit starts."""
    fit(module, Recorder(module), max_steps=2)
    recorder = Recorder(module)
    fit(module, recorder, max_epochs=1)
    loss, accuracy = expected(recorder.batches)
    assert recorder.epochs[0]["train_loss"] == pytest.approx(loss, rel=1e-6)
    assert recorder.epochs[0]["train_accuracy"] == pytest.approx(accuracy, rel=1e-6)
