"""Creating timm classifiers by name, from random weights or a local weights file, never the network."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import timm
import torch
from torch import nn

from shared.models.safety import read_safetensors_state

log = logging.getLogger(__name__)


class UnknownModelError(ValueError):
    pass


def check_architecture(name: str) -> None:
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    raise UnknownModelError(f"unknown timm architecture {name!r}{hint}")


def create_model(
    name: str, num_classes: int, *, pretrained_weights: str | Path | None = None
) -> nn.Module:
    """A timm model with a `num_classes` head.

    `pretrained_weights` is a local `.safetensors` file of the same architecture (for example from
    the timm/Hugging Face model page, downloaded ahead of time); its classifier is dropped when the
    class count differs. timm's own `pretrained=True` would download, so it is never used.
    """
    check_architecture(name)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    if pretrained_weights is not None:
        load_backbone_weights(model, Path(pretrained_weights))
    return model


def load_backbone_weights(model: nn.Module, weights: Path) -> None:
    state = read_safetensors_state(weights)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(usable))
    missing = sorted(set(own) - set(usable))
    if not usable:
        raise ValueError(f"pretrained weights {weights} share no tensors with this architecture")
    model.load_state_dict(usable, strict=False)
    log.info("loaded %d tensors from %s; skipped %d (e.g. the old head), %d left at random",
             len(usable), weights, len(skipped), len(missing))


def classifier_module(model: nn.Module) -> nn.Module:
    """The model's final classification layer (timm names it per architecture)."""
    head = model.get_classifier()
    if not isinstance(head, nn.Module):
        raise ValueError(f"{type(model).__name__} has no classifier module")
    return head


def normalisation(model: nn.Module) -> tuple[list[float], list[float]]:
    """The per-channel mean and std the architecture was designed for (ImageNet's by default)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = [float(x) for x in cfg.get("mean", (0.485, 0.456, 0.406))]
    std = [float(x) for x in cfg.get("std", (0.229, 0.224, 0.225))]
    return mean, std


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def set_torch_threads(threads: int) -> None:
    torch.set_num_threads(max(1, threads))


class Normalise(nn.Module):
    """uint8 NCHW in [0, 255] -> float, normalised with the architecture's mean and std.

    Models take uint8 batches and normalise on their own device: a quarter of the bytes through
    loaders, HTTP and host-to-device copies.
    """

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(std).view(1, 3, 1, 1) * 255.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) * self.inv_std
