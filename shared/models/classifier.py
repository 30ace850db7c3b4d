"""The trained model, whole: its normalisation, its timm network and its configuration.

`ImageClassifier` is the one place where "normalise, then the network" is put together for the
suite's models. Training (inside the LightningModule), evaluation, the model server, integrated
gradients and the model-feature drift encoder all call it, so preprocessing cannot differ between
them. It takes images as they are stored: uint8 N x 3 x H x W (or float pixels in 0..255, as
integrated gradients interpolates them), normalised on the model's own device, a quarter of the
bytes through loaders, HTTP and host-to-device copies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

import numpy as np
import torch
from torch import nn

from shared.errors import UserError
from shared.models.config import ModelConfig
from shared.models.factory import create_network, normalisation
from shared.models.fold import fold_batch_norms

BATCH = 256


def default_device() -> torch.device:
    """Where inference runs when nobody says otherwise: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Normalise(nn.Module):
    """Pixels in [0, 255] (uint8 or float) -> float, normalised with a per-channel mean and std."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(std).view(1, 3, 1, 1) * 255.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) * self.inv_std


class NormalisedNetwork(nn.Module):
    """A network behind its normalisation: pixels in, the network's output (its features) out."""

    def __init__(self, network: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.normalise = Normalise(mean, std)
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalise(images))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self(images)

    @property
    def device(self) -> torch.device:
        return self.normalise.mean.device

    def place(self, device: str | torch.device | None = None) -> NormalisedNetwork:
        """Move to `device` (default: `default_device()`) for inference."""
        return self.to(torch.device(device) if device is not None else default_device()).eval()

    def for_serving(self) -> Self:
        """Faster inference on a CPU, in place: batch norms folded into their convolutions and
        the weights channels last (the layout of N x H x W x 3 images, as `run_batches` passes
        them): 1.1-1.5x the images/s of resnet10t at 64 px (bench/serving.py); the same answers to
        float32 rounding. Only for inference: never train or save the result."""
        self.eval()
        if self.device.type == "cpu":
            fold_batch_norms(self.network)
            self.to(memory_format=torch.channels_last)
        return self

    @torch.inference_mode()
    def run_batches(self, images: np.ndarray, fn: Callable[[torch.Tensor], torch.Tensor],
                    batch_size: int = BATCH, out: np.ndarray | None = None) -> np.ndarray:
        """`fn` over uint8 N x H x W x 3 images (an array or a memory map), float32 rows out:
        into `out` (N x D, e.g. a memory map, so that features need not fit in memory) when
        given, else into one array allocated at the first batch (no list of copies to join)."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected N x H x W x 3 images, got shape {images.shape}")
        if out is not None and len(out) != len(images):
            raise ValueError(f"out has {len(out)} rows for {len(images)} images")
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
            rows = fn(batch.to(self.device).permute(0, 3, 1, 2)).float().cpu().numpy()
            if out is None:
                out = np.empty((len(images), rows.shape[1]), np.float32)
            out[start:start + len(rows)] = rows
        return out if out is not None else np.zeros((0, 0), np.float32)

    def encode(self, images: np.ndarray, batch_size: int = BATCH,
               out: np.ndarray | None = None) -> np.ndarray:
        """Features of N x H x W x 3 uint8 images, N x feature_dim float32 (into `out` if given)."""
        return self.run_batches(images, self.features, batch_size, out)


class ImageClassifier(NormalisedNetwork):
    """A timm classifier with its `ModelConfig`: classes, input size, normalisation, resize policy."""

    def __init__(self, network: nn.Module, config: ModelConfig) -> None:
        super().__init__(network, config.mean, config.std)
        self.config = config

    @classmethod
    def create(cls, architecture: str, class_names: list[str], input_size: int, *,
               resize_policy: str = "crop", pretrained_weights=None) -> ImageClassifier:
        """A new classifier; its normalisation is the one its architecture was designed for."""
        network = create_network(architecture, len(class_names),
                                 pretrained_weights=pretrained_weights)
        mean, std = normalisation(network)
        return cls(network, ModelConfig(architecture, list(class_names), input_size, mean, std,
                                        resize_policy=resize_policy))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features (timm's pre_logits): what the final layer separates."""
        network = self.network
        return network.forward_head(network.forward_features(self.normalise(images)),
                                    pre_logits=True)

    def pooled_stages(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's feature map pooled over positions: the means, then the maxes of the
        maps larger than 1 x 1 (timm's `forward_intermediates`); N x channels each."""
        try:
            stages = self.network.forward_intermediates(self.normalise(images),
                                                        intermediates_only=True)
        except (AttributeError, NotImplementedError):
            raise UserError(f"{self.config.architecture} does not expose its stages (timm's"
                            " forward_intermediates); use the model encoder") from None
        return ([s.float().mean((2, 3)) for s in stages]
                + [s.float().amax((2, 3)) for s in stages if s.shape[2] * s.shape[3] > 1])

    def stage_statistics(self, images: torch.Tensor) -> torch.Tensor:
        """`pooled_stages` side by side."""
        return torch.cat(self.pooled_stages(images), dim=1)

    @torch.inference_mode()
    def stage_widths(self, image_size: int) -> list[int]:
        """How many numbers each pooled map of `stage_statistics` gives at this input size."""
        blank = torch.zeros(1, 3, image_size, image_size, device=self.device)
        return [p.shape[1] for p in self.pooled_stages(blank)]

    def logits(self, images: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
        """Logits of N x H x W x 3 uint8 images, N x classes float32."""
        return self.run_batches(images, self, batch_size)

    def probabilities(self, images: np.ndarray, batch_size: int = BATCH,
                      out: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities of N x H x W x 3 uint8 images, N x classes float32."""
        return self.run_batches(images, lambda x: torch.softmax(self(x).float(), dim=1),
                                batch_size, out)

    def probabilities_and_features(self, images: np.ndarray,
                                   batch_size: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
        """`probabilities` and `features` from one forward pass: timm's head is its classifier
        layer applied to the pre-logits features (`head_is_classifier` checks a model)."""
        network, classes = self.network, self.config.num_classes

        def both(x: torch.Tensor) -> torch.Tensor:
            features = self.features(x)
            logits = network.get_classifier()(features)
            return torch.cat([torch.softmax(logits.float(), dim=1), features.float()], dim=1)

        out = self.run_batches(images, both, batch_size)
        return out[:, :classes], out[:, classes:]

    @torch.inference_mode()
    def head_is_classifier(self) -> bool:
        """Whether logits equal the classifier layer on the features, as the one pass assumes."""
        x = torch.randint(0, 256, (2, 3, self.config.input_size, self.config.input_size),
                          generator=torch.Generator().manual_seed(0)).to(self.device)
        logits = self(x)
        return bool(torch.allclose(self.network.get_classifier()(self.features(x)), logits,
                                   rtol=1e-4, atol=1e-5))


def top_k(probabilities: np.ndarray, k: int) -> np.ndarray:
    """Per row of N x classes probabilities, the k most probable class indices, most probable
    first (ties in class order)."""
    return np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
