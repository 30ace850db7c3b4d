"""Integrated gradients (captum) for a model artifact, in pixel space, with a completeness check.

The explained function is `Normalise(mean, std)` followed by the model, applied to float images in
0..255: baselines, interpolation paths and attributions are then in the same units as the stored
images, so a black baseline really is black and an attribution map lines up with the picture.

The explained output is the target class's logit. Logits are better behaved than softmax
probabilities (no saturation near 0 or 1, so gradients along the path do not vanish), and
completeness is checked on the same quantity: the attributions of an image should add up to
logit(input) - logit(baseline). The difference is captum's convergence delta; it shrinks as
`n_steps` grows and is recorded per image, with the steps it took.

By default (`n_steps=None`, "auto" on the command line) each image's steps grow until completeness
holds (shared.attribution.adaptive); an integer `n_steps` gives every image that many, through
captum, as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients, NoiseTunnel

from shared.attribution.adaptive import (
    ADAPTIVE_RULE,
    FIRST_STEPS,
    MAX_STEPS,
    integrate_adaptively,
)
from shared.attribution.baselines import make_baselines
from shared.attribution.batching import auto_internal_batch_size
from shared.attribution.completeness import COMPLETENESS_TOLERANCE, relative_error
from shared.choices import IG_BASELINES, IG_METHODS
from shared.models import ImageClassifier

log = logging.getLogger(__name__)

FIXED_METHOD = "gausslegendre"  # the rule for a fixed n_steps unless `method` says otherwise
# Adaptive rows per `attribute` group, in captum calls' worth: enough rows that the few images
# left on the finer grids still fill passes, few enough that the rows' tensors stay small.
ADAPTIVE_GROUP_CALLS = 16
NOISE_SAMPLES = 8              # SmoothGrad: noisy copies per image
NOISE_STDEV = 0.1 * 255.0      # SmoothGrad: noise level, a tenth of the pixel range (the paper's 10-20%)
PREDICT_BATCH = 256


@dataclass(frozen=True)
class IGSettings:
    """How to integrate: steps, rule, baseline, batching, optional SmoothGrad."""

    n_steps: int | None = None  # None: adaptive, per image up to max_steps (shared.attribution.adaptive)
    method: str | None = None   # None: gausslegendre at a fixed n_steps; only then may it be set
    baseline: str = "black"
    internal_batch_size: int | None = None  # None: chosen from free memory (shared.attribution.batching)
    noise_tunnel: bool = False
    noise_samples: int = NOISE_SAMPLES
    noise_stdev: float = NOISE_STDEV
    seed: int = 0
    max_steps: int = MAX_STEPS  # adaptive only: no image gets more gradient evaluations

    def __post_init__(self) -> None:
        if self.n_steps is not None and self.n_steps < 1:
            raise ValueError(f"n_steps must be at least 1 (or None: adaptive), not {self.n_steps}")
        if self.method is not None and self.method not in IG_METHODS:
            raise ValueError(f"unknown integration method {self.method!r}; choose one of"
                             f" {', '.join(IG_METHODS)}")
        if self.baseline not in IG_BASELINES:
            raise ValueError(f"unknown baseline {self.baseline!r}; choose one of"
                             f" {', '.join(IG_BASELINES)}")
        if self.internal_batch_size is not None and self.internal_batch_size < 1:
            raise ValueError("internal_batch_size must be at least 1")
        if self.max_steps < FIRST_STEPS:
            raise ValueError(f"max_steps must be at least {FIRST_STEPS}, the first adaptive grid")
        if self.adaptive and self.noise_tunnel:
            raise ValueError("adaptive steps (n_steps=None) do not apply to SmoothGrad: give"
                             " noise_tunnel an integer n_steps")
        if self.adaptive and self.method is not None:
            raise ValueError(f"adaptive steps (n_steps=None) integrate on nested trapezoid grids;"
                             f" method {self.method} needs an integer n_steps")

    @property
    def adaptive(self) -> bool:
        return self.n_steps is None

    @property
    def rule(self) -> str:
        """The integration rule in use."""
        if self.adaptive:
            return ADAPTIVE_RULE
        return self.method or FIXED_METHOD

    @property
    def points_per_image(self) -> int:
        """Gradient evaluations one image costs (adaptive: at least, on the first grid)."""
        if self.adaptive:
            return FIRST_STEPS
        return self.n_steps * (self.noise_samples if self.noise_tunnel else 1)


@dataclass(frozen=True)
class Attributions:
    """Attributions for rows of (image, target class), with what completeness compares them to."""

    values: np.ndarray           # N x H x W x 3 float32, pixel space, channels last like the images
    targets: np.ndarray          # N class indices explained
    output: np.ndarray           # N target logits at the input
    baseline_output: np.ndarray  # N target logits at the baseline
    delta: np.ndarray            # N: sum(values) - (output - baseline_output); SmoothGrad: mean over noise
    steps: np.ndarray            # N integration points each row took (SmoothGrad: per noisy copy)

    @property
    def relative_error(self) -> np.ndarray:
        return relative_error(self.delta, self.output - self.baseline_output)

    @property
    def completeness_ok(self) -> np.ndarray:
        return self.relative_error <= COMPLETENESS_TOLERANCE


def explained_function(classifier: ImageClassifier) -> ImageClassifier:
    """Pixels (float, 0..255) -> logits; parameters frozen so backward computes input gradients only."""
    for parameter in classifier.parameters():
        parameter.requires_grad_(False)
    return classifier.eval()


class Explainer:
    """Predictions and integrated-gradients attributions for uint8 N x H x W x 3 images."""

    def __init__(self, classifier: ImageClassifier, settings: IGSettings,
                 device: torch.device | None = None) -> None:
        self.config = config = classifier.config
        self.settings = settings
        self.forward = explained_function(classifier).place(device)
        self.device = self.forward.device
        self.input_shape = (3, config.input_size, config.input_size)
        self.batch_size = settings.internal_batch_size or auto_internal_batch_size(
            self.forward, self.input_shape, self.device)
        self._ig = IntegratedGradients(self.forward)
        self._tunnel = NoiseTunnel(self._ig)
        self._black_logits: torch.Tensor | None = None

    def _pixels(self, images: np.ndarray) -> torch.Tensor:
        """uint8 N x H x W x 3 -> float N x 3 x H x W on the device, still 0..255."""
        return torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(
            0, 3, 1, 2).float()

    @torch.no_grad()
    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.forward(pixels[s:s + PREDICT_BATCH])
                          for s in range(0, len(pixels), PREDICT_BATCH)]).double()

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        """Logits, N x classes (float64)."""
        if len(images) == 0:
            return np.zeros((0, self.config.num_classes))
        return self.logits(self._pixels(images)).cpu().numpy()

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities, N x classes (float64)."""
        return torch.softmax(torch.from_numpy(self.predict_logits(images)), dim=1).numpy()

    def _baseline_logits(self, baselines: torch.Tensor) -> torch.Tensor:
        """Logits at the baselines; a black baseline is the same image for all, so it runs once."""
        if self.settings.baseline != "black":
            return self.logits(baselines)
        if self._black_logits is None:
            self._black_logits = self.logits(baselines[:1])
        return self._black_logits.expand(len(baselines), -1)

    def rows_per_call(self) -> int:
        """Images per captum call, so one call is about one internal batch of points."""
        return max(1, self.batch_size // self.settings.points_per_image)

    def rows_per_group(self) -> int:
        """Rows integrated together: one captum call's worth at a fixed n_steps; adaptive, several,
        so that the few rows left for the finer grids still fill the passes."""
        return self.rows_per_call() * (ADAPTIVE_GROUP_CALLS if self.settings.adaptive else 1)

    def attribute(self, images: np.ndarray, targets: np.ndarray, positions: np.ndarray | list[int],
                  logits: np.ndarray | None = None) -> Attributions:
        """Attributions of each image for its target class; `positions` seed per-image noise.

        `logits` (N x classes, from `predict_logits`) saves the forward pass that completeness
        needs at the inputs, when the caller has already made it to find the targets.
        """
        targets = np.asarray(targets, dtype=np.int64)
        positions = np.asarray(positions, dtype=np.int64)
        if not len(images) == len(targets) == len(positions):
            raise ValueError("images, targets and positions must have the same length")
        if logits is not None and len(logits) != len(images):
            raise ValueError("logits must have one row per image")
        step = self.rows_per_group()
        parts = [self._attribute_chunk(images[s:s + step], targets[s:s + step],
                                       positions[s:s + step],
                                       None if logits is None else logits[s:s + step])
                 for s in range(0, len(images), step)]
        if not parts:
            h, w = self.input_shape[1:]
            empty = np.zeros(0)
            return Attributions(np.zeros((0, h, w, 3), np.float32), targets, empty, empty, empty,
                                np.zeros(0, np.int64))
        return Attributions(*(np.concatenate(arrays) for arrays in zip(*parts, strict=True)))

    def _attribute_chunk(self, images: np.ndarray, targets: np.ndarray, positions: np.ndarray,
                         logits: np.ndarray | None) -> tuple[np.ndarray, ...]:
        s = self.settings
        pixels = self._pixels(images)
        baselines = make_baselines(s.baseline, pixels, positions, s.seed)
        target = torch.from_numpy(targets).to(self.device)
        rows = torch.arange(len(targets), device=self.device)
        at_inputs = (self.logits(pixels) if logits is None else
                     torch.from_numpy(np.asarray(logits, np.float64)).to(self.device))
        output = at_inputs[rows, target]
        baseline_output = self._baseline_logits(baselines)[rows, target]
        gap = (output - baseline_output).cpu().numpy()
        if s.adaptive:
            values, delta, steps = integrate_adaptively(self._gradients, pixels, baselines, target,
                                                        gap, self.batch_size, s.max_steps)
        else:
            values, delta = (self._smoothgrad(pixels, baselines, target, int(positions[0]))
                             if s.noise_tunnel else self._fixed(pixels, baselines, target, gap))
            steps = np.full(len(images), s.n_steps, np.int64)
        return (values.permute(0, 2, 3, 1).float().cpu().numpy(), targets,
                output.cpu().numpy(), baseline_output.cpu().numpy(), delta, steps)

    def _fixed(self, pixels: torch.Tensor, baselines: torch.Tensor, target: torch.Tensor,
               gap: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """captum's integrated gradients at n_steps points for every image, and their delta."""
        s = self.settings
        points = len(pixels) * s.n_steps
        values = self._ig.attribute(
            pixels, baselines=baselines, target=target, n_steps=s.n_steps, method=s.rule,
            internal_batch_size=self.batch_size if points > self.batch_size else None)
        return values, values.double().flatten(1).sum(1).cpu().numpy() - gap

    def _gradients(self, points: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The gradient of each point's target logit: the integrand of integrated gradients."""
        with torch.enable_grad():
            points = points.requires_grad_()
            selected = self.forward(points).gather(1, targets[:, None]).sum()
            return torch.autograd.grad(selected, points)[0]

    def _smoothgrad(self, pixels: torch.Tensor, baselines: torch.Tensor, target: torch.Tensor,
                    first_position: int) -> tuple[torch.Tensor, np.ndarray]:
        """SmoothGrad over IG: the mean of IG at noisy copies; delta is captum's, averaged likewise.

        captum draws the noise from torch's global generator: it is seeded per chunk (from the
        seed and the chunk's first image) inside a forked RNG state, so the same flags and internal
        batch size give the same attributions and the caller's random state is left alone.
        """
        s = self.settings
        per_pass = max(1, self.batch_size // (len(pixels) * s.n_steps))
        points = len(pixels) * min(per_pass, s.noise_samples) * s.n_steps
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(s.seed * 1_000_003 + first_position)
            values, delta = self._tunnel.attribute(
                pixels, nt_type="smoothgrad", nt_samples=s.noise_samples,
                nt_samples_batch_size=min(per_pass, s.noise_samples), stdevs=s.noise_stdev,
                baselines=baselines, target=target, n_steps=s.n_steps, method=s.rule,
                internal_batch_size=self.batch_size if points > self.batch_size else None,
                return_convergence_delta=True)
        delta = delta.double()
        if delta.numel() != len(pixels):  # one per noisy copy: average them per image
            delta = delta.view(len(pixels), -1).mean(1)
        return values, delta.cpu().numpy()
