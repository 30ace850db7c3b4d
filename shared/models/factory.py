"""timm networks by name, from random weights or a local weights file, never the network."""

from __future__ import annotations

import difflib
from pathlib import Path

import timm
from torch import nn

from shared.errors import UserError
from shared.models.centre_tap import crop_centre_taps
from shared.models.safety import read_safetensors_state
from shared.models.weights import load_matching

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class UnknownModelError(UserError):
    pass


def check_architecture(name: str) -> None:
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    raise UnknownModelError(f"unknown timm architecture {name!r}{hint}")


def create_network(
    name: str, num_classes: int, *, pretrained_weights: str | Path | None = None
) -> nn.Module:
    """A timm network with a `num_classes` head.

    `pretrained_weights` is a local `.safetensors` file of the same architecture (for example from
    the timm/Hugging Face model page, downloaded ahead of time); its classifier is dropped when the
    class count differs. timm's own `pretrained=True` would download, so it is never used. Its
    "same"-padded convolutions take their centre tap alone on 1 x 1 maps (shared/models/centre_tap.py).
    """
    check_architecture(name)
    network = timm.create_model(name, pretrained=False, num_classes=num_classes)
    crop_centre_taps(network)
    if pretrained_weights is not None:
        weights = Path(pretrained_weights)
        if not load_matching(network, read_safetensors_state(weights), str(weights)):
            raise UserError(f"pretrained weights {weights} share no tensors with {name}")
    return network


def classifier_module(network: nn.Module) -> nn.Module:
    """The network's final classification layer (timm names it per architecture)."""
    head = network.get_classifier()
    if not isinstance(head, nn.Module):
        raise TypeError(f"{type(network).__name__} has no classifier module")
    return head


def normalisation(network: nn.Module) -> tuple[list[float], list[float]]:
    """The per-channel mean and std the architecture was designed for (ImageNet's by default)."""
    cfg = getattr(network, "pretrained_cfg", None) or {}
    mean = [float(x) for x in cfg.get("mean", IMAGENET_MEAN)]
    std = [float(x) for x in cfg.get("std", IMAGENET_STD)]
    return mean, std
