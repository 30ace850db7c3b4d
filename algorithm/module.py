"""The LightningModule: a timm classifier, its loss, optimiser and schedule, and its metrics."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from shared.models import Normalise, classifier_module


class Classifier(pl.LightningModule):
    def __init__(self, model: nn.Module, num_classes: int, mean: list[float], std: list[float],
                 hp: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.normalise = Normalise(mean, std)
        self.hp = hp
        self.loss = nn.CrossEntropyLoss(label_smoothing=hp["label_smoothing"])
        self.train_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalise(images))

    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        loss = self.loss(logits, labels)
        self.train_accuracy(logits, labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.log("train_accuracy", self.train_accuracy, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        self.val_accuracy(logits, labels)
        self.log("val_loss", self.loss(logits, labels), on_epoch=True, sync_dist=True)
        self.log("val_accuracy", self.val_accuracy, on_epoch=True)

    def set_backbone_trainable(self, trainable: bool) -> None:
        head = {id(p) for p in classifier_module(self.model).parameters()}
        for parameter in self.model.parameters():
            if id(parameter) not in head:
                parameter.requires_grad_(trainable)

    def configure_optimizers(self):
        hp = self.hp
        params = self.model.parameters()
        lr, wd = hp["learning_rate"], hp["weight_decay"]
        optimizer = {
            "adam": lambda: torch.optim.Adam(params, lr=lr, weight_decay=wd),
            "adamw": lambda: torch.optim.AdamW(params, lr=lr, weight_decay=wd),
            "sgd": lambda: torch.optim.SGD(params, lr=lr, weight_decay=wd,
                                           momentum=hp["momentum"], nesterov=hp["momentum"] > 0),
            "rmsprop": lambda: torch.optim.RMSprop(params, lr=lr, weight_decay=wd,
                                                   momentum=hp["momentum"]),
        }[hp["optimizer"]]()
        epochs = hp["epochs"]
        schedule = hp["lr_scheduler"]
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
