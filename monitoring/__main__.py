"""`python -m monitoring {train,serve} [flags]`: MMD data drift on raw images, as Processing jobs.

train: reference images (processing/input/data) -> detector (processing/output/detector).
serve: production images (processing/input/data) + detector (processing/input/detector) ->
report (processing/output/report/drift.json and drift.png). Drift is a result: exit 0 either way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.drift import ENCODER_KINDS, UNTRAINED
from shared.logs import configure_logging
from shared.sagemaker import (
    ProcessingPaths,
    parser_reporting_to,
    run_processing_mode,
)

MAX_REFERENCE = 10_000  # the bandwidth step holds reference x reference distances in memory


def build_parser() -> argparse.ArgumentParser:
    parser_class = parser_reporting_to(ProcessingPaths.current().message_file)
    parser = parser_class(prog="python -m monitoring", description=__doc__)
    modes = parser.add_subparsers(dest="mode", required=True)
    train = modes.add_parser("train", help="fit the drift detector on reference images")
    train.add_argument("--input", type=Path, default=None,
                       help="reference images, any folder tree (default: processing/input/data)")
    train.add_argument("--model", type=Path, default=None,
                       help="trained model folder or model.tar.gz, for --encoder model"
                            " (default: processing/input/model)")
    train.add_argument("--output", type=Path, default=None,
                       help="detector folder (default: processing/output/detector)")
    train.add_argument("--encoder", choices=ENCODER_KINDS, default=UNTRAINED,
                       help="untrained: a seeded random convolutional encoder (default); model: the"
                            " trained classifier's penultimate features")
    train.add_argument("--image-size", type=int, default=None,
                       help="images are resized to SIZE x SIZE before encoding (default 32, or the"
                            " model's input size with --encoder model)")
    train.add_argument("--p-value", type=float, default=0.05,
                       help="drift is flagged when the test's p-value is below this (default 0.05)")
    train.add_argument("--permutations", type=int, default=100,
                       help="permutations in the test (default 100)")
    train.add_argument("--reference-size", type=int, default=2000,
                       help="reference images kept, a seeded sample of larger sets (default 2000)")
    train.add_argument("--seed", type=int, default=0,
                       help="seeds the encoder weights, the sample and the permutations (default 0)")
    train.add_argument("--workers", type=int, default=0,
                       help="decoding processes (default 0: one per available CPU)")
    serve = modes.add_parser("serve", help="test production images for drift")
    serve.add_argument("--input", type=Path, default=None,
                       help="production images, any folder tree (default: processing/input/data)")
    serve.add_argument("--detector", type=Path, default=None,
                       help="what train mode wrote (default: processing/input/detector)")
    serve.add_argument("--report-output", type=Path, default=None,
                       help="where drift.json and drift.png go (default: processing/output/report)")
    serve.add_argument("--window", type=int, default=None,
                       help="also test consecutive windows of N images in file order")
    serve.add_argument("--workers", type=int, default=0,
                       help="decoding processes (default 0: one per available CPU)")
    return parser


def check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.workers < 0:
        parser.error("--workers must be 0 (all CPUs) or more")
    if args.mode == "serve":
        if args.window is not None and args.window < 2:
            parser.error("--window must be at least 2 images")
        return
    if args.image_size is not None and not 22 <= args.image_size <= 512:
        parser.error(f"--image-size {args.image_size} must be between 22 and 512")
    if not 0 < args.p_value < 1:
        parser.error(f"--p-value {args.p_value} must be between 0 and 1")
    if not 1 <= args.permutations <= 100_000:
        parser.error("--permutations must be between 1 and 100000")
    if not 2 <= args.reference_size <= MAX_REFERENCE:
        parser.error(f"--reference-size must be between 2 and {MAX_REFERENCE:,}")
    if args.seed < 0:
        parser.error("--seed must be 0 or more")


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    check_flags(parser, args)

    return run_processing_mode("monitoring", args, lambda: (device(),))


if __name__ == "__main__":
    sys.exit(main())
