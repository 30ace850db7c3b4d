"""`python -m processing {train,serve} [flags]`: the processing component's entrypoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from processing.common import add_common_flags, check_common_flags
from processing.train import parse_split_dirs
from shared.logs import configure_logging
from shared.sagemaker import (
    ProcessingPaths,
    parser_reporting_to,
    run_processing_mode,
)


def build_parser() -> argparse.ArgumentParser:
    parser_class = parser_reporting_to(ProcessingPaths.current().message_file)
    parser = parser_class(prog="python -m processing", description=__doc__)
    modes = parser.add_subparsers(dest="mode", required=True)
    train = modes.add_parser("train", help="validate, split, resize and augment labelled images")
    add_common_flags(train)
    train.add_argument("--split-dirs", type=parse_split_dirs, default=None,
                       help="auto (default: use train/ validation|val/ test/ folders when present),"
                            " none, or SPLIT=FOLDER pairs, e.g. train=seg_train,test=seg_test")
    train.add_argument("--validation-fraction", type=float, default=0.15)
    train.add_argument("--test-fraction", type=float, default=0.15)
    train.add_argument("--augment-copies", type=int, default=1,
                       help="augmented copies per training image (default 1; 0 disables)")
    train.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=True,
                       help="include horizontal flips in augmentation (default on)")
    train.add_argument("--seed", type=int, default=42)
    for split in ("train", "validation", "test"):
        train.add_argument(f"--{split}-output", type=Path, default=None,
                           help=f"default: processing/output/{split}")
    serve = modes.add_parser("serve", help="validate and resize production images")
    add_common_flags(serve)
    serve.add_argument("--output", type=Path, default=None,
                       help="default: processing/output/data")
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    check_common_flags(parser, args)
    if args.mode == "train":
        fractions = args.validation_fraction + args.test_fraction
        if args.validation_fraction < 0 or args.test_fraction < 0 or fractions >= 1:
            parser.error("--validation-fraction and --test-fraction must be >= 0 and sum below 1")
        if args.augment_copies < 0:
            parser.error("--augment-copies must be 0 or more")

    return run_processing_mode("processing", args)


if __name__ == "__main__":
    sys.exit(main())
