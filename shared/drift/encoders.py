"""Encoders that turn images into short feature vectors for the MMD test.

MMD on raw pixels has little power (thousands of dimensions, a median-heuristic kernel that sees
mostly noise), so alibi-detect's image examples first reduce each image with an encoder. Four kinds:

- `untrained`: the small convolutional encoder of alibi-detect's image examples (three strided
  convolutions and a linear layer to 32 numbers), with weights drawn from a fixed seed. It knows
  nothing about the task, which is the point: it keeps broad image statistics (intensity, texture,
  geometry) that a corruption changes, and it needs no model.
- `model`: the trained classifier's penultimate features (`ImageClassifier.features`). More
  sensitive to shifts that matter to the classifier, and tied to that model.
- `softmax`: the trained classifier's class probabilities (black-box shift detection, Lipton et
  al. 2018): as many numbers as classes, and it also sees a change in the class proportions.
- `stages`: the trained classifier's every stage, each pooled over positions (mean, and max where
  the stage is larger than 1 x 1), and three image statistics (`image_statistics`), standardised
  per feature on the reference images and weighted so that each stage (and the statistics) counts
  alike. The early stages keep what the penultimate features are trained to ignore (noise, blur,
  geometry), and the statistics what every stage ignores (JPEG blocking), so it has the most power
  of the four (bench/drift_power.py); the training pipeline's default.

All take uint8 images (N x S x S x 3, what `shared.data.decode_images` produces) and normalise on
their own (`shared.models.NormalisedNetwork`), so the preprocessing travels with the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from shared import schema
from shared.choices import ENCODER_KINDS, RESIZE_POLICIES
from shared.errors import UserError
from shared.models import (
    ImageClassifier,
    ModelConfig,
    NormalisedNetwork,
    UnsafeArtifactError,
    create_network,
    load_artifact,
    load_exact,
)
from shared.schema import setting

UNTRAINED, MODEL, SOFTMAX, STAGES = ENCODER_KINDS
UNTRAINED_ARCHITECTURE = "alibi-conv-encoder"
ENCODE_BATCH = 256
# A model encoder's weights are the classifier network's, saved under this prefix (format 1).
MODEL_WEIGHTS_PREFIX = "model."
# A stages encoder's standardisation (fitted on the reference) is saved with its weights.
SHIFT, SCALE = "standardise.shift", "standardise.scale"
STAGE_SCALE_FLOOR = 0.1
# A stages encoder's options flag its `image_statistics` block; detectors saved before it have none.
IMAGE_STATISTICS = "image_statistics"
IMAGE_STATISTICS_WIDTH = 3  # gradient, Laplacian, blockiness
JPEG_BLOCK = 8  # the side of JPEG's DCT blocks, whose edges `image_statistics` compares


def image_statistics(images: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W images on the 0..255 scale -> N x 3: mean absolute gradient, mean absolute
    Laplacian (detail and noise), and blockiness, the mean gradient across the edges of JPEG's
    8 x 8 blocks over that inside them (near 1 on bench/drift_power.py's 32 px scenes, about 2
    after JPEG at quality 10). A classifier's features barely move under that JPEG (about 0.2 of
    their spread) while blockiness moves by 3 to 7 spreads on that benchmark's data sets. Blocks
    are counted from the model input's corner: the statistic sees JPEG done at (or aligned with)
    the input size."""
    grey = images.float().mean(1)
    dx = (grey[:, :, 1:] - grey[:, :, :-1]).abs()
    dy = (grey[:, 1:, :] - grey[:, :-1, :]).abs()
    laplacian = (4 * grey[:, 1:-1, 1:-1] - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1]
                 - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:]).abs().mean((1, 2))
    gradient = (dx.mean((1, 2)) + dy.mean((1, 2))) / 2
    blockiness = (_blockiness(dx, 2) + _blockiness(dy, 1)) / 2
    return torch.stack([gradient, laplacian, blockiness], dim=1)


def _blockiness(differences: torch.Tensor, axis: int) -> torch.Tensor:
    """Mean difference across block edges over (1 + the mean inside blocks), along `axis`."""
    n = differences.shape[axis]
    edge = torch.zeros(n, dtype=torch.bool, device=differences.device)
    edge[JPEG_BLOCK - 1::JPEG_BLOCK] = True
    if not edge.any():  # an image no wider than one block
        return differences.new_zeros(len(differences))
    across = differences.index_select(axis, edge.nonzero().flatten()).mean((1, 2))
    inside = differences.index_select(axis, (~edge).nonzero().flatten()).mean((1, 2))
    return across / (1 + inside)


class EncoderFormatError(UserError):
    """An encoder description that cannot be used (bad values, or weights that do not fit)."""


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to rebuild an encoder and feed it: stored in detector.json."""

    kind: str = setting(choices=ENCODER_KINDS)
    architecture: str = setting(min_length=1)
    image_size: int = setting(min=8, max=4096)
    mean: list[float] = setting(length=3, help="per channel, on the 0..1 scale")
    std: list[float] = setting(length=3, above=0)
    feature_dim: int = setting(min=1)
    resize_policy: str = setting("crop", choices=RESIZE_POLICIES)
    options: dict[str, Any] = setting(default_factory=dict, help="kind-specific: encoding_dim,"
                                                                 " seed, class_names,"
                                                                 " image_statistics")

    def to_json(self) -> dict[str, Any]:
        return schema.to_json(self)

    @classmethod
    def from_json(cls, data: Any) -> EncoderSpec:
        """Validate strictly: a detector folder is input from outside, not trusted."""
        try:
            return schema.from_json(cls, data, "encoder")
        except schema.SchemaError as exc:
            raise EncoderFormatError(str(exc)) from None


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


class Encoder:
    """A normalised network with its spec: uint8 images in, float32 features out."""

    def __init__(self, spec: EncoderSpec, network: NormalisedNetwork,
                 device: str | torch.device = "cpu",
                 standardise: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.spec = spec
        self.network = network.place(device)
        self.device = self.network.device
        self.standardise = standardise  # stages: (shift, scale) per feature, from `adapt`

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network's weights, and a stages encoder's standardisation; the normalisation is
        rebuilt from the spec."""
        prefix = "" if self.spec.kind == UNTRAINED else MODEL_WEIGHTS_PREFIX
        state = {prefix + k: v.detach().cpu().contiguous()
                 for k, v in self.network.network.state_dict().items()}
        if self.standardise is not None:
            state |= {SHIFT: torch.from_numpy(self.standardise[0]),
                      SCALE: torch.from_numpy(self.standardise[1])}
        return state

    def adapt(self, images: np.ndarray) -> None:
        """Learn what the kind learns from the reference images: a stages encoder its
        per-feature standardisation. The stages' scales differ by orders of magnitude, and the
        MMD's one kernel width would otherwise see only the largest. A feature almost constant
        on the reference is divided by no less than STAGE_SCALE_FLOOR of its stage's typical
        spread, so that a tiny wobble in it cannot pass for drift (each image statistic, in
        units of its own, is its own stage for this). Each block (a stage's means, its maxes,
        the image statistics) is then divided by the square root of its width, so that every
        block adds alike to a squared distance: the 512 means of the last stage would otherwise
        drown out the three image statistics, and with them a shift only those see."""
        if self.spec.kind != STAGES:
            return
        self.standardise = None
        raw = self.encode(images)
        spread = raw.std(0)
        widths = self.network.stage_widths(self.image_size)
        statistics = IMAGE_STATISTICS_WIDTH if self.spec.options.get(IMAGE_STATISTICS) else 0
        floors = np.split(spread, np.cumsum(widths + [1] * statistics)[:-1])
        typical = np.concatenate([np.full(len(block), np.sqrt(np.mean(block ** 2)) or 1.0)
                                  for block in floors])
        blocks = widths + [statistics] * bool(statistics)
        weight = np.concatenate([np.full(width, np.sqrt(width)) for width in blocks])
        self.standardise = (raw.mean(0), (np.maximum(spread, STAGE_SCALE_FLOOR * typical) * weight)
                            .astype(np.float32))

    def _stages(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.network.stage_statistics(images)
        features = pooled if not self.spec.options.get(IMAGE_STATISTICS) else \
            torch.cat([pooled, image_statistics(images)], dim=1)
        if self.standardise is None:
            return features
        # batch by batch, in float32 as numpy would: no N x D temporaries
        shift, scale = (torch.from_numpy(a).to(features.device) for a in self.standardise)
        return (features.float() - shift) / scale

    def encode(self, images: np.ndarray, batch_size: int = ENCODE_BATCH,
               out: np.ndarray | None = None) -> np.ndarray:
        """N x S x S x 3 uint8 (an array or memory map) -> N x feature_dim float32, written into
        `out` when given (e.g. a memory map, for more features than memory holds)."""
        if images.ndim != 4 or images.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"expected N x {self.image_size} x {self.image_size} x 3 images,"
                             f" got shape {images.shape}")
        if not len(images):
            return np.zeros((0, self.spec.feature_dim), np.float32) if out is None else out
        if self.spec.kind == SOFTMAX:
            return self.network.probabilities(images, batch_size, out)
        if self.spec.kind == STAGES:
            return self.network.run_batches(images, self._stages, batch_size, out)
        return self.network.encode(images, batch_size, out)


def _feature_dim(encoder: Encoder) -> int:
    blank = np.zeros((1, encoder.image_size, encoder.image_size, 3), np.uint8)
    return int(encoder.encode(blank).shape[1])


def untrained_encoder(image_size: int = 32, encoding_dim: int = 32, seed: int = 0,
                      device: str | torch.device = "cpu") -> Encoder:
    """The default encoder, its weights drawn from `seed` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = conv_encoder(image_size, encoding_dim)
    spec = EncoderSpec(UNTRAINED, UNTRAINED_ARCHITECTURE, image_size, [0.0, 0.0, 0.0],
                       [1.0, 1.0, 1.0], encoding_dim, options={"encoding_dim": encoding_dim,
                                                                "seed": seed})
    return Encoder(spec, NormalisedNetwork(net, spec.mean, spec.std), device)


def classifier_encoder(model_path, image_size: int | None = None,
                       device: str | torch.device = "cpu", kind: str = MODEL) -> Encoder:
    """Penultimate features (`model`), class probabilities (`softmax`) or pooled stages
    (`stages`; `adapt` it to the reference) of a trained model artifact (folder or .tar.gz)."""
    classifier = load_artifact(model_path)
    config = classifier.config
    size = image_size or config.input_size
    options = {"class_names": config.class_names, "model_input_size": config.input_size}
    if kind == STAGES:
        options[IMAGE_STATISTICS] = True
    spec = EncoderSpec(kind, config.architecture, size, config.mean, config.std, 1,
                       config.resize_policy, options=options)
    encoder = Encoder(spec, classifier, device)
    encoder.spec = replace(spec, feature_dim=_feature_dim(encoder))
    return encoder


def build_encoder(spec: EncoderSpec, state: dict[str, torch.Tensor],
                  device: str | torch.device = "cpu") -> Encoder:
    """Rebuild a saved encoder from its spec and weights; the weights must fit exactly."""
    if spec.kind == UNTRAINED:
        if spec.architecture != UNTRAINED_ARCHITECTURE:
            raise EncoderFormatError(f"unknown untrained encoder architecture {spec.architecture!r}")
        network = NormalisedNetwork(conv_encoder(spec.image_size,
                                                 int(spec.options.get("encoding_dim", 32))),
                                    spec.mean, spec.std)
        weights, standardise = state, None
    else:
        names = spec.options.get("class_names")
        if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
            raise EncoderFormatError("a model encoder needs its class_names in the options")
        network = ImageClassifier(create_network(spec.architecture, len(names)),
                                  ModelConfig(spec.architecture, names, spec.image_size, spec.mean,
                                              spec.std, spec.resize_policy))
        if not isinstance(spec.options.get(IMAGE_STATISTICS, False), bool):
            raise EncoderFormatError(f"the option {IMAGE_STATISTICS} must be true or false")
        state = dict(state)
        standardise = _standardisation(spec, state.pop(SHIFT, None), state.pop(SCALE, None))
        if not all(k.startswith(MODEL_WEIGHTS_PREFIX) for k in state):
            raise EncoderFormatError(f"the encoder weights of a model encoder are named"
                                     f" {MODEL_WEIGHTS_PREFIX}*; these are not")
        weights = {k.removeprefix(MODEL_WEIGHTS_PREFIX): v for k, v in state.items()}
    try:
        load_exact(network.network, weights, f"the encoder weights do not fit {spec.architecture}")
    except UnsafeArtifactError as exc:
        raise EncoderFormatError(str(exc)) from None
    encoder = Encoder(spec, network, device, standardise)
    dim = _feature_dim(encoder)
    if dim != spec.feature_dim:
        raise EncoderFormatError(f"the encoder gives {dim} features, detector.json says {spec.feature_dim}")
    return encoder


def _standardisation(spec: EncoderSpec, shift: torch.Tensor | None,
                     scale: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray] | None:
    """A stages encoder's saved (shift, scale), checked; other kinds have none."""
    if spec.kind != STAGES:
        if shift is not None or scale is not None:
            raise EncoderFormatError(f"a {spec.kind} encoder has no {SHIFT} or {SCALE}")
        return None
    if shift is None or scale is None:
        raise EncoderFormatError(f"a stages encoder needs its {SHIFT} and {SCALE}")
    shift, scale = shift.float().numpy(), scale.float().numpy()
    if (shift.shape != (spec.feature_dim,) or scale.shape != (spec.feature_dim,)
            or not np.isfinite(shift).all() or not (np.isfinite(scale) & (scale > 0)).all()):
        raise EncoderFormatError(f"{SHIFT} and {SCALE} must be {spec.feature_dim} finite numbers"
                                 " (scale above 0)")
    return shift, scale
