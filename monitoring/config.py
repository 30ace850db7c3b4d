"""The monitoring job's flags, declared once: `python -m monitoring train|serve --help` lists them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.choices import ENCODER_KINDS
from shared.cpus import default_workers
from shared.sagemaker.entrypoint import input_flag, output_flag
from shared.schema import check_defaults, setting

MAX_REFERENCE = 10_000  # the bandwidth step holds reference x reference distances in memory
MAX_TEST = 10_000  # default cap on the whole-batch test's images: 5x the default reference
DEFAULT_IMAGE_SIZE = 32  # for the untrained encoder; a model encoder uses the model's input size


@dataclass(frozen=True)
class Workers:
    workers: int = setting(0, min=0, help="decoding processes (0: one per available CPU)")

    @property
    def decode_workers(self) -> int:
        return self.workers or default_workers()


@dataclass(frozen=True)
class TrainConfig(Workers):
    input: Path | None = input_flag("data", "reference images, any folder tree")
    model: Path | None = input_flag("model", "trained model folder or model.tar.gz, for --encoder"
                                             " model, softmax or stages")
    output: Path | None = output_flag("detector", "detector folder")
    encoder: str = setting("untrained", choices=ENCODER_KINDS,
                           help="untrained: a seeded random convolutional encoder (no model"
                                " needed); model: the trained classifier's penultimate features;"
                                " softmax: its class probabilities (also sees a change in the"
                                " class proportions); stages: its every stage, pooled, with"
                                " three image statistics, standardised (the most power)")
    image_size: int | None = setting(None, min=22, max=512, metavar="SIZE",
                                     help=f"images are resized to SIZE x SIZE before encoding"
                                          f" (none: {DEFAULT_IMAGE_SIZE}, or the model's input"
                                          " size with a model's encoder)")
    p_value: float = setting(0.05, above=0, below=1,
                             help="drift is flagged when the test's p-value is below this")
    permutations: int = setting(100, min=1, max=100_000, help="permutations in the test")
    reference_size: int = setting(2000, min=2, max=MAX_REFERENCE,
                                  help="reference images kept, a seeded sample of larger sets")
    seed: int = setting(0, min=0, help="seeds the encoder weights, the sample and the permutations")

    def run(self) -> None:
        from monitoring import train

        train.run(self)


@dataclass(frozen=True)
class Tested:
    """What serve and verdict share: the detector to test against, and the report."""

    detector: Path | None = input_flag("detector", "the detector monitoring train wrote")
    report_output: Path | None = output_flag("report", "where drift.json and drift.png go")
    window: int | None = setting(None, min=2, metavar="N",
                                 help="also test consecutive windows of N images in file order"
                                      " (verdict: host, then file, order)")
    max_test_size: int = setting(MAX_TEST, min=2, metavar="N",
                                 help="the whole-batch test uses a seeded sample of at most N"
                                      " images (its cost grows with the square of N); windows"
                                      " still cover every image")


@dataclass(frozen=True)
class ServeConfig(Workers, Tested):
    input: Path | None = input_flag("data", "production images, any folder tree")

    def run(self) -> None:
        from monitoring import serve

        serve.run(self)


@dataclass(frozen=True)
class VerdictConfig(Tested):
    input: Path | None = input_flag("reports", "every host's drift-<host>.json and"
                                               " features-<host>.npz, as monitoring serve wrote them")

    def run(self) -> None:
        from monitoring import verdict

        verdict.run(self)


for _config in (TrainConfig, ServeConfig, VerdictConfig):
    check_defaults(_config)
