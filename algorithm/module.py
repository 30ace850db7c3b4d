"""The LightningModule: the suite's `ImageClassifier`, its loss, optimiser, schedule and metrics."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from algorithm.hyperparameters import Hyperparameters
from shared.models import ImageClassifier, classifier_module


class Classifier(pl.LightningModule):
    def __init__(self, classifier: ImageClassifier, hp: Hyperparameters) -> None:
        super().__init__()
        self.classifier = classifier
        self.hp = hp
        self.learning_rate = hp.learning_rate  # the learning-rate finder may set another
        num_classes = classifier.config.num_classes
        self.loss = nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)
        self.train_loss = MeanMetric()
        self.train_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(images)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        loss = self.loss(logits, labels)
        # Accumulate every step, log once: logging both every step cost 2.7 ms of Lightning's
        # Python a step (6.0 -> 3.3 ms on one linear layer, bench/training.py), and only the
        # epoch's figures are read. Lightning computes (syncing processes) and resets them at
        # epoch end; EpochMetrics reads them then.
        self.train_loss.update(loss.detach(), weight=len(labels))
        self.train_accuracy.update(logits.detach(), labels)
        if batch_idx + 1 == self.trainer.num_training_batches:
            self.log("train_loss", self.train_loss, on_step=False, on_epoch=True)
            self.log("train_accuracy", self.train_accuracy, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_start(self) -> None:
        # An epoch cut short (the learning-rate finder's, a stopped job's) logged nothing to reset.
        self.train_loss.reset()
        self.train_accuracy.reset()

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        self.val_accuracy(logits, labels)
        self.log("val_loss", self.loss(logits, labels), on_epoch=True, sync_dist=True)
        self.log("val_nll", functional.cross_entropy(logits, labels), on_epoch=True, sync_dist=True)
        self.log("val_accuracy", self.val_accuracy, on_epoch=True)

    def set_backbone_trainable(self, trainable: bool) -> None:
        network = self.classifier.network
        head = {id(p) for p in classifier_module(network).parameters()}
        for parameter in network.parameters():
            if id(parameter) not in head:
                parameter.requires_grad_(trainable)

    def configure_optimizers(self):
        hp = self.hp
        params = self.classifier.network.parameters()
        lr, wd = self.learning_rate, hp.weight_decay
        # fused: one kernel per step for all tensors; for resnet10t's 4.9M weights on a 2-core
        # CPU, AdamW's step took 7-8 ms against 27-38 ms for the default per-tensor loop
        optimizer = {
            "adam": lambda: torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=True),
            "adamw": lambda: torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=True),
            "sgd": lambda: torch.optim.SGD(params, lr=lr, weight_decay=wd, fused=True,
                                           momentum=hp.momentum, nesterov=hp.momentum > 0),
            "rmsprop": lambda: torch.optim.RMSprop(params, lr=lr, weight_decay=wd,
                                                   momentum=hp.momentum),
        }[hp.optimizer]()
        epochs = hp.epochs
        schedule = hp.lr_scheduler
        if schedule == "none":
            return optimizer
        if schedule == "onecycle":
            steps = int(self.trainer.estimated_stepping_batches)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        if schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        else:
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, epochs // 3),
                                                        gamma=0.1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
