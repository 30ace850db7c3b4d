"""The explainability job's flags (both modes take the same), declared once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.choices import IG_BASELINES, IG_METHODS
from shared.sagemaker.entrypoint import input_flag, output_flag
from shared.schema import SchemaError, check_defaults, setting

AUTO = "auto"
MAX_FIXED_STEPS = 10_000
# shared.attribution.adaptive's FIRST_STEPS and MAX_STEPS, repeated here so that the flags are
# checked before torch is imported (a test holds them equal)
FIRST_STEPS = 17
MAX_STEPS = 1025


def parse_steps(text: str) -> int | None:
    """--n-steps: auto (None: adaptive) or a fixed count; anything else names the valid choices."""
    word = text.strip().lower()
    if word == AUTO:
        return None
    if word.isdigit() and 1 <= int(word) <= MAX_FIXED_STEPS:
        return int(word)
    raise SchemaError(f"--n-steps must be {AUTO} or an integer from 1 to {MAX_FIXED_STEPS},"
                      f" not {text!r}")


@dataclass(frozen=True)
class ExplainConfig:
    input: Path | None = input_flag("data", "processed data set folder")
    model: Path | None = input_flag("model", "model folder or model.tar.gz")
    output: Path | None = output_flag("explanations", "explanations folder")
    max_images: int | None = setting(None, min=1, metavar="N",
                                     help="explain a seeded sample of at most N images, stratified"
                                          " by class when labels exist (none: every image)")
    n_steps: int | None = setting(
        None, parse=parse_steps, min=1, max=MAX_FIXED_STEPS, metavar="auto|N",
        help="integration steps per image. auto (the default): each image's steps double (17, 33,"
             " 65, ...) until its attributions add up to its logit change within the tolerance,"
             " up to --max-steps; N: exactly N for every image")
    max_steps: int = setting(MAX_STEPS, min=FIRST_STEPS, max=MAX_FIXED_STEPS,
                             help="--n-steps auto: the most steps an image may take (the finest"
                                  " grid not above it is the last)")
    method: str | None = setting(None, choices=IG_METHODS,
                                 help="captum's integral approximation, for a fixed --n-steps"
                                      " (default: gausslegendre; auto uses nested trapezoid"
                                      " grids)")
    baseline: str = setting("black", choices=IG_BASELINES,
                            help="black image, blurred input or uniform noise")
    internal_batch_size: int | None = setting(None, min=1,
                                              help="interpolated inputs per forward/backward pass"
                                                   " (none: chosen from free GPU memory or RAM)")
    noise_tunnel: bool = setting(False, help="SmoothGrad over integrated gradients (8 noisy copies"
                                             " per image)")
    gallery_size: int = setting(24, min=0, help="images drawn as heatmap PNGs in index.html")
    seed: int = setting(0, min=0, help="seeds the sample, noise baselines and SmoothGrad noise")
    workers: int = setting(0, min=0, help="CPU threads for torch (0: every available CPU)")

    def __post_init__(self) -> None:
        if self.n_steps is None and self.noise_tunnel:
            raise SchemaError("--noise-tunnel needs a fixed --n-steps N (e.g. 50): --n-steps auto"
                              " adapts plain integrated gradients only")
        if self.n_steps is None and self.method is not None:
            raise SchemaError(f"--method {self.method} needs a fixed --n-steps N: --n-steps auto"
                              " integrates on nested trapezoid grids")


@dataclass(frozen=True)
class TrainConfig(ExplainConfig):
    """Train mode: training or validation images, plus the per-class reference maps."""

    def run(self) -> None:
        from explainability import job

        job.run(self, mode="train")


@dataclass(frozen=True)
class ServeConfig(ExplainConfig):
    """Serve mode: production images."""

    def run(self) -> None:
        from explainability import job

        job.run(self, mode="serve")


check_defaults(ExplainConfig)
