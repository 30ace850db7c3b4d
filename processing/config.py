"""The processing job's flags, declared once: `python -m processing train|serve --help` lists them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.choices import RESIZE_POLICIES
from shared.cpus import default_workers
from shared.names import NAME, RULE
from shared.sagemaker.entrypoint import input_flag, output_flag
from shared.schema import SchemaError, check_defaults, setting

SPLITS = ("train", "validation", "test")


def parse_split_dirs(text: str) -> dict[str, str] | None:
    """`auto` (None), `none` ({}), or `train=seg_train,test=seg_test` (split -> folder name)."""
    if text == "auto":
        return None
    if text == "none":
        return {}
    mapping = {}
    for part in text.split(","):
        split, sep, folder = part.partition("=")
        if not sep or split.strip() not in SPLITS or not folder.strip():
            raise ValueError(f"expected auto, none or SPLIT=FOLDER pairs such as"
                             f" train=seg_train,test=seg_test with SPLIT one of {', '.join(SPLITS)}")
        mapping[split.strip()] = folder.strip()
    if "train" not in mapping:
        raise ValueError("the train folder must be named")
    return mapping


def parse_list(text: str) -> list[str]:
    """`a,b,c` -> ["a", "b", "c"]: non-empty, each given once."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items or len(set(items)) != len(items):
        raise ValueError("expected a comma-separated list, each item given once")
    return items


def parse_names(text: str) -> list[str]:
    """A list of input names, each a valid name (they are folders under processing/input)."""
    names = parse_list(text)
    for name in names:
        if not NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid name ({RULE})")
    return names


@dataclass(frozen=True)
class CommonConfig:
    input: Path | None = input_flag("data", "input folder")
    image_size: int = setting(224, help="output images are SIZE x SIZE", min=8, max=4096,
                              metavar="SIZE")
    resize_policy: str = setting("crop", choices=RESIZE_POLICIES,
                                 help="crop: scale the short side, cut the centre; pad: scale the"
                                      " long side, pad with black")
    max_shard_mb: float = setting(6.0, above=0, help="upper bound on each .npy shard, in MB"
                                                     " (6 is Batch Transform's default payload)")
    max_bad_fraction: float = setting(0.5, min=0, max=1,
                                      help="fail when more than this fraction of images is unusable")
    workers: int = setting(0, min=0, help="decoding processes (0: one per available CPU)")
    report_output: Path | None = output_flag("report", "report folder")

    @property
    def decode_workers(self) -> int:
        return self.workers or default_workers()


@dataclass(frozen=True)
class TrainConfig(CommonConfig):
    split_dirs: dict[str, str] | None = setting(
        None, parse=parse_split_dirs, metavar="auto|none|SPLIT=FOLDER,...",
        help="auto (default): use train/ validation|val/ test/ folders when present; none: split"
             " afresh; or SPLIT=FOLDER pairs, e.g. train=seg_train,test=seg_test")
    validation_fraction: float = setting(0.15, min=0, max=1, help="share of each class held out"
                                                                  " for validation")
    test_fraction: float = setting(0.15, min=0, max=1, help="share of each class held out for test")
    extra_channels: list[str] = setting(
        default_factory=list, parse=parse_names, metavar="NAME,...",
        help="more labelled inputs (processing/input/NAME) merged with data, e.g. newly annotated"
             " images; the manifest records each image's channel, and one left out is reported"
             " as not present (default: none)")
    classes: list[str] | None = setting(
        None, parse=parse_list, metavar="NAME,...",
        help="the class names in index order; needed when an input is ShardedByS3Key on several"
             " hosts, where no host sees every class folder (default: the class folders found)")
    augment_copies: int = setting(1, min=0, max=100,
                                  help="augmented copies per training image (0 disables)")
    hflip: bool = setting(True, help="include horizontal flips in augmentation (--no-hflip for"
                                     " data where mirroring changes the class)")
    seed: int = setting(42, min=0, help="seeds the split and the augmentation")
    train_output: Path | None = output_flag("train", "training split")
    validation_output: Path | None = output_flag("validation", "validation split")
    test_output: Path | None = output_flag("test", "test split")

    def __post_init__(self) -> None:
        if "data" in self.extra_channels:
            raise SchemaError("--extra-channels names inputs besides data")
        if self.validation_fraction + self.test_fraction >= 1:
            raise SchemaError("--validation-fraction and --test-fraction must sum below 1")

    def run(self) -> None:
        from processing import train

        train.run(self)

    @property
    def fractions(self) -> dict[str, float]:
        return {"validation": self.validation_fraction, "test": self.test_fraction}


@dataclass(frozen=True)
class ServeConfig(CommonConfig):
    output: Path | None = output_flag("data", "the processed data set")

    def run(self) -> None:
        from processing import serve

        serve.run(self)


for _config in (TrainConfig, ServeConfig):
    check_defaults(_config)
