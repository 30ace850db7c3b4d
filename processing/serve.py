"""`processing serve`: production images (any folder tree) -> one validated, resized dataset."""

from __future__ import annotations

import logging
import time
from collections import Counter

from processing.config import ServeConfig
from processing.report import common_report
from shared.atomic import write_json_atomic
from shared.data import (
    DatasetWriter,
    decode_usable,
    labels_from_folders,
    list_images,
    list_labelled_images,
)
from shared.sagemaker import JobError, load_processing_context

log = logging.getLogger(__name__)


def run(config: ServeConfig) -> None:
    started = time.monotonic()
    ctx = load_processing_context()
    root = config.input or ctx.paths.processing_input("data")
    labelled = root.is_dir() and labels_from_folders(root)
    # Class folders, when present, are kept as labels: the simulation measures accuracy with them.
    files, classes = list_labelled_images(root) if labelled else (list_images(root), None)
    if not files:
        raise JobError(f"no images in {root} (looked for .jpg .jpeg .png .bmp .gif .webp .tif"
                       " .tiff in any folder below it)")
    share = ctx.share(None if config.input else "data", files)
    output = config.output or ctx.paths.processing_output("data")
    report_dir = config.report_output or ctx.paths.processing_output("report")
    duplicates: list[dict[str, str]] = []
    with DatasetWriter(output, config.image_size, classes=classes,
                       max_shard_mb=config.max_shard_mb, host=ctx.host_tag) as writer:
        # The workers decode straight into the dataset's shards: no scratch copy to write out.
        pool = decode_usable(share, size=config.image_size, policy=config.resize_policy,
                             workers=config.decode_workers, into=writer.reserve(len(share)),
                             what="input", max_bad_fraction=config.max_bad_fraction)
        first: dict[str, str] = {}
        for f, digest in zip(pool.files, pool.digests, strict=True):
            if digest in first:  # production duplicates still get a prediction each
                duplicates.append({"path": f.relpath, "duplicate_of": first[digest],
                                   "action": "kept"})
            first.setdefault(digest, f.relpath)
            writer.add_reserved(f.relpath, f.relpath, f.label)
        counts = Counter(str(f.label) for f in pool.files) if labelled else {}
        writer.commit({"split": "data", "images": len(writer), "class_counts": dict(counts),
                       "image_size": config.image_size, "resize_policy": config.resize_policy})
    report = {
        **common_report("serve", config, ctx, root, pool),
        "labelled": labelled,
        "classes": classes,
        "images_used": len(pool.files),
        "duplicates": duplicates,
        "class_counts": dict(counts),
        "seconds": round(time.monotonic() - started, 2),
    }
    write_json_atomic(report_dir / ctx.output_name("report.json"), report)
    log.info("%d images written to %s, %d skipped", len(pool.files), output, len(pool.skipped))
