"""Flags and helpers both processing modes share."""

from __future__ import annotations

import argparse
from pathlib import Path

from shared.data import RESIZE_POLICIES, default_workers, scratch_folder
from shared.sagemaker import ProcessingContext


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=Path, default=None,
                        help="input folder (default: processing/input/data)")
    parser.add_argument("--image-size", type=int, default=224,
                        help="output images are SIZE x SIZE (default 224)")
    parser.add_argument("--resize-policy", choices=RESIZE_POLICIES, default="crop",
                        help="crop: scale the short side, cut the centre; pad: scale the long side,"
                             " pad with black (default crop)")
    parser.add_argument("--max-shard-mb", type=float, default=6.0,
                        help="upper bound on each .npy shard, in MB (default 6, Batch Transform's"
                             " default payload)")
    parser.add_argument("--max-bad-fraction", type=float, default=0.5,
                        help="fail when more than this fraction of images is unusable (default 0.5)")
    parser.add_argument("--workers", type=int, default=0,
                        help="decoding processes (default 0: one per available CPU)")
    parser.add_argument("--report-output", type=Path, default=None,
                        help="report folder (default: processing/output/report)")


def check_common_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 8 <= args.image_size <= 4096:
        parser.error(f"--image-size {args.image_size} must be between 8 and 4096")
    if not 0.0 <= args.max_bad_fraction <= 1.0:
        parser.error(f"--max-bad-fraction {args.max_bad_fraction} must be between 0 and 1")
    if args.max_shard_mb <= 0:
        parser.error("--max-shard-mb must be positive")
    if args.workers < 0:
        parser.error("--workers must be 0 (all CPUs) or more")


def workers(args: argparse.Namespace) -> int:
    return args.workers or default_workers()


def host_prefix(ctx: ProcessingContext) -> str:
    """Shard and manifest name prefix: empty on one host, the host name when several share S3."""
    return ctx.current_host if ctx.host_count > 1 else ""


def scratch(ctx: ProcessingContext):
    """Scratch space on the job's volume (beside the inputs), removed afterwards."""
    return scratch_folder(ctx.paths.base / "processing")
