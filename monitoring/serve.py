"""`monitoring serve`: production images + a detector -> drift.json and drift.png.

Drift is a result, not a failure: the job succeeds either way and a pipeline reads `drift.json`.
With `--window N` consecutive windows of N images in file order are also tested one by one, so a
gradual shift can be located. On several hosts each host tests its own share of the images against
the whole reference and writes `drift-<host>.json` / `.png`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from monitoring.config import ServeConfig
from monitoring.plot import plot_drift
from shared.atomic import write_json_atomic
from shared.data import decode_usable, host_share, list_images, scratch_folder
from shared.drift import DetectorFormatError, DriftDetector, Window
from shared.drift.mmd import MIN_SAMPLES
from shared.models import default_device
from shared.sagemaker import JobError, load_processing_context

log = logging.getLogger(__name__)


def load_detector(folder) -> DriftDetector:
    try:
        return DriftDetector.load(folder, device=default_device())
    except DetectorFormatError as exc:
        raise JobError(f"cannot use the drift detector: {exc}") from None


def window_json(window: Window, files: list) -> dict[str, Any]:
    return {"index": window.index, "start": window.start, "end": window.end,
            "first_file": files[window.start].relpath, "last_file": files[window.end - 1].relpath,
            **window.result.to_json()}


def run(config: ServeConfig) -> None:
    started = time.monotonic()
    ctx = load_processing_context()
    detector_dir = config.detector or ctx.paths.processing_input("detector")
    detector = load_detector(detector_dir)  # before any decoding: fail fast on a bad one
    root = config.input or ctx.paths.processing_input("data")
    files = list_images(root)
    if not files:
        raise JobError(f"no images to test in {root} (looked for .jpg .jpeg .png .bmp .gif .webp"
                       " .tif .tiff in any folder below it)")
    share = host_share(files, ctx.host_index, ctx.host_count)
    if not share:
        raise JobError(f"host {ctx.current_host} got no images: {len(files)} images for"
                       f" {ctx.host_count} hosts")
    with scratch_folder(ctx.paths.scratch_root) as scratch:
        decoded = decode_usable(share, size=detector.image_size, policy=detector.resize_policy,
                                workers=config.decode_workers, scratch=scratch, what="production",
                                min_images=MIN_SAMPLES)
        featurise_started = time.monotonic()
        features = detector.features(decoded.images)
    test_started = time.monotonic()
    batch = detector.test_features(features)
    windows = detector.test_windows(features, config.window) if config.window else []
    finished = time.monotonic()
    report_dir = config.report_output or ctx.paths.processing_output("report")
    plot_name = ctx.output_name("drift.png")
    report = {
        **batch.to_json(),
        "p_value_threshold": detector.config.p_value,
        "window_size": config.window,
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
    write_json_atomic(report_dir / ctx.output_name("drift.json"), report)
    log.info("%s: p = %.4f, MMD² = %.3g (threshold %.3g), %d images vs %d reference%s",
             "DRIFT" if batch.drift else "no drift", batch.p_value, batch.distance, batch.threshold,
             batch.n_test, batch.n_reference,
             f"; {len(report['windows_with_drift'])} of {len(windows)} windows drift" if windows else "")
