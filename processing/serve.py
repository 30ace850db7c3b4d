"""`processing serve`: production images (any folder tree) -> one validated, resized dataset."""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter

from processing.common import host_prefix, scratch, workers
from processing.validate import size_statistics, validate_images
from shared.data import (
    DatasetWriter,
    host_share,
    labels_from_folders,
    list_images,
    list_labelled_images,
    write_json_atomic,
)
from shared.sagemaker import JobError, ProcessingContext

log = logging.getLogger(__name__)


def run(args: argparse.Namespace, ctx: ProcessingContext) -> None:
    started = time.monotonic()
    root = args.input or ctx.paths.input("data")
    labelled = root.is_dir() and labels_from_folders(root)
    # Class folders, when present, are kept as labels: the simulation measures accuracy with them.
    files, classes = list_labelled_images(root) if labelled else (list_images(root), None)
    if not files:
        raise JobError(f"no images in {root} (looked for .jpg .jpeg .png .bmp .gif .webp .tif"
                       " .tiff in any folder below it)")
    share = host_share(files, ctx.host_index, ctx.host_count)
    output = args.output or ctx.paths.output("data")
    report_dir = args.report_output or ctx.paths.output("report")
    duplicates: list[dict[str, str]] = []
    with scratch(ctx) as scratch_dir:
        pool = validate_images(share, size=args.image_size, policy=args.resize_policy,
                               workers=workers(args), scratch=scratch_dir,
                               max_bad_fraction=args.max_bad_fraction)
        first: dict[str, str] = {}
        with DatasetWriter(output, args.image_size, classes=classes,
                           max_shard_mb=args.max_shard_mb, prefix=host_prefix(ctx)) as writer:
            for row, f in enumerate(pool.files):
                digest = pool.digests[row]
                if digest in first:  # production duplicates still get a prediction each
                    duplicates.append({"path": f.relpath, "duplicate_of": first[digest],
                                       "action": "kept"})
                first.setdefault(digest, f.relpath)
                writer.add(pool.images[row], f.relpath, f.relpath, f.label)
            counts = Counter(str(f.label) for f in pool.files) if labelled else {}
            writer.commit({"split": "data", "images": len(writer), "class_counts": dict(counts)})
    report = {
        "mode": "serve",
        "input": str(root),
        "host": ctx.current_host,
        "hosts": ctx.hosts,
        "image_size": args.image_size,
        "resize_policy": args.resize_policy,
        "labelled": labelled,
        "classes": classes,
        "images_found": pool.found,
        "images_used": len(pool.files),
        "skipped": pool.skipped,
        "skipped_fraction": round(len(pool.skipped) / pool.found, 4),
        "duplicates": duplicates,
        "class_counts": dict(counts),
        "image_sizes": size_statistics(pool.sizes),
        "seconds": round(time.monotonic() - started, 2),
    }
    name = f"report-{host_prefix(ctx)}.json" if host_prefix(ctx) else "report.json"
    write_json_atomic(report_dir / name, report)
    log.info("%d images written to %s, %d skipped", len(pool.files), output, len(pool.skipped))
