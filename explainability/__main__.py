"""`python -m explainability {train,serve} [flags]`: the explainability component's entrypoint.

Both modes explain every image of a processed data set (or a seeded, stratified sample) with
integrated gradients; train mode also writes per-class mean attribution maps, the reference that
production explanations are compared against.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.logs import configure_logging
from shared.sagemaker import ProcessingPaths, parser_reporting_to, run_processing_mode

# Literal copies of shared.attribution's names, so a bad flag fails before torch and captum load.
METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
BASELINES = ("black", "blur", "noise")


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=Path, default=None,
                        help="processed data set folder (default: processing/input/data)")
    parser.add_argument("--model", type=Path, default=None,
                        help="model folder or model.tar.gz (default: processing/input/model)")
    parser.add_argument("--output", type=Path, default=None,
                        help="explanations folder (default: processing/output/explanations)")
    parser.add_argument("--max-images", type=int, default=None,
                        help="explain a seeded sample of at most N images, stratified by class when"
                             " labels exist (default: every image)")
    parser.add_argument("--n-steps", type=int, default=50,
                        help="integration steps per image (default 50)")
    parser.add_argument("--method", choices=METHODS, default="gausslegendre",
                        help="captum's integral approximation (default gausslegendre)")
    parser.add_argument("--baseline", choices=BASELINES, default="black",
                        help="black image, blurred input or uniform noise (default black)")
    parser.add_argument("--internal-batch-size", type=int, default=None,
                        help="interpolated inputs per forward/backward pass (default: chosen from"
                             " free GPU memory or available RAM)")
    parser.add_argument("--noise-tunnel", action="store_true",
                        help="SmoothGrad over integrated gradients (8 noisy copies per image)")
    parser.add_argument("--gallery-size", type=int, default=24,
                        help="images drawn as heatmap PNGs in index.html (default 24)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the sample, noise baselines and SmoothGrad noise (default 0)")
    parser.add_argument("--workers", type=int, default=0,
                        help="CPU threads for torch (default 0: every available CPU)")


def build_parser() -> argparse.ArgumentParser:
    parser_class = parser_reporting_to(ProcessingPaths.current().message_file)
    parser = parser_class(prog="python -m explainability", description=__doc__)
    modes = parser.add_subparsers(dest="mode", required=True)
    add_flags(modes.add_parser("train", help="explain training/validation images and write"
                                             " per-class reference maps"))
    add_flags(modes.add_parser("serve", help="explain production images"))
    return parser


def check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.max_images is not None and args.max_images < 1:
        parser.error("--max-images must be at least 1")
    if not 1 <= args.n_steps <= 10_000:
        parser.error("--n-steps must be between 1 and 10000")
    if args.internal_batch_size is not None and args.internal_batch_size < 1:
        parser.error("--internal-batch-size must be at least 1")
    if args.gallery_size < 0:
        parser.error("--gallery-size must be 0 or more")
    if args.workers < 0:
        parser.error("--workers must be 0 (all CPUs) or more")


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    check_flags(parser, args)

    return run_processing_mode("explainability", args)


if __name__ == "__main__":
    sys.exit(main())
