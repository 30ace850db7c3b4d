"""The explainability job's flags (both modes take the same), declared once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.choices import IG_BASELINES, IG_METHODS
from shared.sagemaker.entrypoint import input_flag, output_flag
from shared.schema import check_defaults, setting


@dataclass(frozen=True)
class ExplainConfig:
    input: Path | None = input_flag("data", "processed data set folder")
    model: Path | None = input_flag("model", "model folder or model.tar.gz")
    output: Path | None = output_flag("explanations", "explanations folder")
    max_images: int | None = setting(None, min=1, metavar="N",
                                     help="explain a seeded sample of at most N images, stratified"
                                          " by class when labels exist (none: every image)")
    n_steps: int = setting(50, min=1, max=10_000, help="integration steps per image")
    method: str = setting("gausslegendre", choices=IG_METHODS,
                          help="captum's integral approximation")
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
