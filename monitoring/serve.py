"""`monitoring serve`: production images + a detector -> drift.json and drift.png.

Drift is a result, not a failure: the job succeeds either way and a pipeline reads `drift.json`.
With `--window N` consecutive windows of N images in file order are also tested one by one, so a
gradual shift can be located. On several hosts each host tests its own share of the images against
the whole reference and writes `drift-<host>.json` / `.png`.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from monitoring.images import decode_all
from monitoring.plot import plot_drift
from shared.data import default_workers, host_share, list_images, scratch_folder, write_json_atomic
from shared.drift import DetectorFormatError, DriftDetector, Window
from shared.sagemaker import JobError, ProcessingContext

log = logging.getLogger(__name__)


def load_detector(folder, device: str) -> DriftDetector:
    try:
        return DriftDetector.load(folder, device=device)
    except DetectorFormatError as exc:
        raise JobError(f"cannot use the drift detector: {exc}") from None


def window_json(window: Window, files: list) -> dict[str, Any]:
    return {"index": window.index, "start": window.start, "end": window.end,
            "first_file": files[window.start].relpath, "last_file": files[window.end - 1].relpath,
            **window.result.to_json()}


def run(args: argparse.Namespace, ctx: ProcessingContext, device: str) -> None:
    started = time.monotonic()
    detector_dir = args.detector or ctx.paths.input("detector")
    detector = load_detector(detector_dir, device)  # before any decoding: fail fast on a bad one
    root = args.input or ctx.paths.input("data")
    files = list_images(root)
    if not files:
        raise JobError(f"no images to test in {root} (looked for .jpg .jpeg .png .bmp .gif .webp"
                       " .tif .tiff in any folder below it)")
    share = host_share(files, ctx.host_index, ctx.host_count)
    if not share:
        raise JobError(f"host {ctx.current_host} got no images: {len(files)} images for"
                       f" {ctx.host_count} hosts")
    with scratch_folder(ctx.paths.base / "processing") as scratch:
        decoded = decode_all(share, size=detector.image_size, policy=detector.resize_policy,
                             workers=args.workers or default_workers(), scratch=scratch,
                             what="production")
        featurise_started = time.monotonic()
        features = detector.features(decoded.images)
    test_started = time.monotonic()
    batch = detector.test_features(features)
    windows = detector.test_windows(features, args.window) if args.window else []
    finished = time.monotonic()
    suffix = f"-{ctx.current_host}" if ctx.host_count > 1 else ""
    report_dir = args.report_output or ctx.paths.output("report")
    plot_name = f"drift{suffix}.png"
    report = {
        **batch.to_json(),
        "p_value_threshold": detector.config.p_value,
        "window_size": args.window,
        "windows": [window_json(w, decoded.files) for w in windows],
        "windows_with_drift": [w.index for w in windows if w.result.drift],
        "detector": {**detector.identity(), "path": str(detector_dir)},
        "input": str(root),
        "host": ctx.current_host,
        "hosts": ctx.hosts,
        "images_found": len(share),
        "images_used": len(decoded.files),
        "skipped": decoded.skipped,
        "plot": plot_name,
        "seconds": {"decode": round(featurise_started - started, 3),
                    "featurise": round(test_started - featurise_started, 3),
                    "test": round(finished - test_started, 3)},
    }
    plot_drift(batch, windows, report_dir / plot_name,
               f"drift of {root.name or root} against detector {detector.config.detector_id}")
    write_json_atomic(report_dir / f"drift{suffix}.json", report)
    log.info("%s: p = %.4f, MMD² = %.3g (threshold %.3g), %d images vs %d reference%s",
             "DRIFT" if batch.drift else "no drift", batch.p_value, batch.distance, batch.threshold,
             batch.n_test, batch.n_reference,
             f"; {len(report['windows_with_drift'])} of {len(windows)} windows drift" if windows else "")
