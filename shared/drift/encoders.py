"""Encoders that turn images into short feature vectors for the MMD test.

MMD on raw pixels has little power (thousands of dimensions, a median-heuristic kernel that sees
mostly noise), so alibi-detect's image examples first reduce each image with an encoder. Two kinds:

- `untrained`: the small convolutional encoder of alibi-detect's image examples (three strided
  convolutions and a linear layer to 32 numbers), with weights drawn from a fixed seed. It knows
  nothing about the task, which is the point: it keeps broad image statistics (intensity, texture,
  geometry) that a corruption changes, and it needs no model.
- `model`: the trained classifier's penultimate features (timm `pre_logits`). More sensitive to
  shifts that matter to the classifier, and tied to that model.

Both take uint8 images (N x S x S x 3, what `shared.data.decode_images` produces) and normalise on
their own, so the preprocessing travels with the encoder rather than living in the caller.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.models import Normalise, create_model, load_artifact

UNTRAINED = "untrained"
MODEL = "model"
ENCODER_KINDS = (UNTRAINED, MODEL)
UNTRAINED_ARCHITECTURE = "alibi-conv-encoder"
RESIZE_POLICY = "crop"  # the same default as the processing component
ENCODE_BATCH = 256


class EncoderFormatError(ValueError):
    """An encoder description that cannot be used (bad values, or weights that do not fit)."""


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to rebuild an encoder and feed it: stored in detector.json."""

    kind: str
    architecture: str
    image_size: int
    mean: list[float]  # per channel, on the 0..1 scale (Normalise multiplies by 255)
    std: list[float]
    feature_dim: int
    resize_policy: str = RESIZE_POLICY
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific: encoding_dim, classes

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> EncoderSpec:
        """Validate strictly: a detector folder is input from outside, not trusted."""
        if not isinstance(data, dict):
            raise EncoderFormatError("encoder must be a JSON object")
        kind, arch, size = data.get("kind"), data.get("architecture"), data.get("image_size")
        if kind not in ENCODER_KINDS:
            raise EncoderFormatError(f"encoder kind {kind!r} is not one of {', '.join(ENCODER_KINDS)}")
        if not isinstance(arch, str) or not arch:
            raise EncoderFormatError("encoder architecture must be a non-empty string")
        if not _is_int(size) or not 8 <= size <= 4096:
            raise EncoderFormatError("encoder image_size must be an integer between 8 and 4096")
        dim = data.get("feature_dim")
        if not _is_int(dim) or dim < 1:
            raise EncoderFormatError("encoder feature_dim must be a positive integer")
        for key in ("mean", "std"):
            values = data.get(key)
            if not (isinstance(values, list) and len(values) == 3
                    and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)):
                raise EncoderFormatError(f"encoder {key} must be a list of 3 numbers")
        if any(v <= 0 for v in data["std"]):
            raise EncoderFormatError("encoder std values must be positive")
        policy, options = data.get("resize_policy", RESIZE_POLICY), data.get("options", {})
        if policy not in ("crop", "pad"):
            raise EncoderFormatError(f"encoder resize_policy {policy!r} is not crop or pad")
        if not isinstance(options, dict):
            raise EncoderFormatError("encoder options must be an object")
        return cls(kind, arch, size, [float(v) for v in data["mean"]],
                   [float(v) for v in data["std"]], dim, policy, dict(options))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def conv_encoder(image_size: int, encoding_dim: int = 32) -> nn.Sequential:
    """alibi-detect's image encoder (its CIFAR-10 MMD example), sized for any square input."""
    convs = nn.Sequential(
        nn.Conv2d(3, 64, 4, stride=2, padding=0), nn.ReLU(),
        nn.Conv2d(64, 128, 4, stride=2, padding=0), nn.ReLU(),
        nn.Conv2d(128, 512, 4, stride=2, padding=0), nn.ReLU(),
        nn.Flatten(),
    )
    side = image_size
    for _ in range(3):
        side = (side - 4) // 2 + 1
    if side < 1:
        raise EncoderFormatError(f"image size {image_size} is too small for the encoder (minimum 22)")
    return nn.Sequential(*convs, nn.Linear(512 * side * side, encoding_dim))


class PenultimateFeatures(nn.Module):
    """A timm classifier cut before its last layer: the features the classifier separates."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class Encoder:
    """An encoder network with its preprocessing: uint8 images in, float32 features out."""

    def __init__(self, spec: EncoderSpec, net: nn.Module, device: str | torch.device = "cpu") -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)
        self.normalise = Normalise(spec.mean, spec.std).to(self.device)

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network's weights only: the normalisation is rebuilt from the spec."""
        return {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}

    @torch.inference_mode()
    def encode(self, images: np.ndarray, batch_size: int = ENCODE_BATCH) -> np.ndarray:
        """N x S x S x 3 uint8 (an array or memory map) -> N x feature_dim float32."""
        if images.ndim != 4 or images.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"expected N x {self.image_size} x {self.image_size} x 3 images,"
                             f" got shape {images.shape}")
        out = np.empty((len(images), self.spec.feature_dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
            x = self.normalise(batch.to(self.device).permute(0, 3, 1, 2))
            out[start:start + len(batch)] = self.net(x).float().cpu().numpy()
        return out


def untrained_encoder(image_size: int = 32, encoding_dim: int = 32, seed: int = 0,
                      device: str | torch.device = "cpu") -> Encoder:
    """The default encoder, its weights drawn from `seed` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = conv_encoder(image_size, encoding_dim)
    spec = EncoderSpec(UNTRAINED, UNTRAINED_ARCHITECTURE, image_size, [0.0, 0.0, 0.0],
                       [1.0, 1.0, 1.0], encoding_dim, options={"encoding_dim": encoding_dim,
                                                                "seed": seed})
    return Encoder(spec, net, device)


def classifier_encoder(model_path, image_size: int | None = None,
                       device: str | torch.device = "cpu") -> Encoder:
    """Penultimate features of a trained model artifact (folder or model.tar.gz)."""
    model, config = load_artifact(model_path)
    net = PenultimateFeatures(model)
    size = image_size or config.input_size
    with torch.inference_mode():
        dim = int(net.eval()(torch.zeros(1, 3, size, size)).shape[1])
    spec = EncoderSpec(MODEL, config.architecture, size, config.mean, config.std, dim,
                       options={"class_names": config.class_names,
                                "model_input_size": config.input_size})
    return Encoder(spec, net, device)


def build_encoder(spec: EncoderSpec, state: dict[str, torch.Tensor],
                  device: str | torch.device = "cpu") -> Encoder:
    """Rebuild a saved encoder from its spec and weights; the weights must fit exactly."""
    if spec.kind == UNTRAINED:
        if spec.architecture != UNTRAINED_ARCHITECTURE:
            raise EncoderFormatError(f"unknown untrained encoder architecture {spec.architecture!r}")
        net: nn.Module = conv_encoder(spec.image_size, int(spec.options.get("encoding_dim", 32)))
    else:
        names = spec.options.get("class_names")
        if not isinstance(names, list) or not names:
            raise EncoderFormatError("a model encoder needs its class_names in the options")
        net = PenultimateFeatures(create_model(spec.architecture, len(names)))
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        raise EncoderFormatError(
            f"the encoder weights do not fit {spec.architecture} (missing"
            f" {len(expected.keys() - got.keys())} tensors, unexpected {len(got.keys() - expected.keys())},"
            f" wrong shape {sum(expected[k] != got[k] for k in expected.keys() & got.keys())})")
    net.load_state_dict(state, strict=True)
    net.eval()
    with torch.inference_mode():
        dim = int(net(torch.zeros(1, 3, spec.image_size, spec.image_size)).shape[1])
    if dim != spec.feature_dim:
        raise EncoderFormatError(f"the encoder gives {dim} features, detector.json says {spec.feature_dim}")
    return Encoder(spec, net, device)
