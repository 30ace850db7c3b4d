"""`monitoring serve`: production images + a detector -> drift.json and drift.png.

Drift is a result, not a failure: the job succeeds either way and a pipeline reads `drift.json`.
With `--window N` consecutive windows of N images in file order are also tested one by one, so a
gradual shift can be located. Beside the report goes `features.npz`, the images' features and
names. On several hosts each host tests its own share of the images against the whole reference
and writes `drift-<host>.json`, `.png` and `features-<host>.npz`; `monitoring verdict` then joins
every host's features into the one verdict over all the images (`drift.json`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from monitoring.config import ServeConfig, Tested
from monitoring.plot import plot_drift
from shared.atomic import write_atomic, write_json_atomic
from shared.data import decode_usable, list_images, scratch_folder
from shared.drift import DetectorFormatError, DriftDetector, Window
from shared.drift.mmd import MIN_SAMPLES
from shared.models import default_device
from shared.sagemaker import JobError, ProcessingContext, load_processing_context

log = logging.getLogger(__name__)
REPORT = "drift.json"
FEATURES = "features.npz"  # features (N x D float32) and names (N) of the images tested here


def load_detector(folder) -> DriftDetector:
    try:
        return DriftDetector.load(folder, device=default_device())
    except DetectorFormatError as exc:
        raise JobError(f"cannot use the drift detector: {exc}") from None


def window_json(window: Window, names: list[str]) -> dict[str, Any]:
    return {"index": window.index, "start": window.start, "end": window.end,
            "first_file": names[window.start], "last_file": names[window.end - 1],
            **window.result.to_json()}


def features_name(ctx: ProcessingContext) -> str:
    return ctx.output_name(FEATURES)


def save_features(path: Path, features: np.ndarray, names: list[str]) -> None:
    """This host's features and image names, for `monitoring verdict` to join across hosts."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to a name
            np.savez(f, features=features, names=np.array(names, dtype=str))

    write_atomic(path, write)


def test_and_report(detector: DriftDetector, detector_dir: Path, features: np.ndarray,
                    names: list[str], tested: Tested, report_dir: Path,
                    ctx: ProcessingContext, title: str, details: dict[str, Any]) -> dict[str, Any]:
    """The test over `features` (a sample of at most `max_test_size` of them) and over its
    windows, drift.json and drift.png under this host's names; the report is returned."""
    started = time.monotonic()
    window = tested.window
    batch = detector.test_features(features, tested.max_test_size)
    windows = detector.test_windows(features, window) if window else []
    plot_name = ctx.output_name("drift.png")
    report = {
        **batch.to_json(),
        "p_value_threshold": detector.config.p_value,
        "max_test_size": tested.max_test_size,
        "window_size": window,
        "windows": [window_json(w, names) for w in windows],
        "windows_with_drift": [w.index for w in windows if w.result.drift],
        "detector": {**detector.identity(), "path": str(detector_dir)},
        "host": ctx.current_host,
        "hosts": ctx.hosts,
        "plot": plot_name,
        **details,
    }
    report["seconds"] = {**details.get("seconds", {}), "test": round(time.monotonic() - started, 3)}
    plot_drift(batch, windows, report_dir / plot_name, title)
    write_json_atomic(report_dir / ctx.output_name(REPORT), report)
    log.info("%s: p = %.4f, MMD² = %.3g (threshold %.3g), %d images vs %d reference%s",
             "DRIFT" if batch.drift else "no drift", batch.p_value, batch.distance, batch.threshold,
             batch.n_test, batch.n_reference,
             f"; {len(report['windows_with_drift'])} of {len(windows)} windows drift" if windows else "")
    return report


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
    share = ctx.share(None if config.input else "data", files)
    if not share:
        raise JobError(f"host {ctx.current_host} got no images: {len(files)} images for"
                       f" {ctx.host_count} hosts")
    with scratch_folder(ctx.paths.scratch_root) as scratch:
        decoded = decode_usable(share, size=detector.image_size, policy=detector.resize_policy,
                                workers=config.decode_workers, into=scratch, what="production",
                                min_images=MIN_SAMPLES)
        featurise_started = time.monotonic()
        # A memory map, like the pixels: features of any number of images (6 kB each for the
        # stages encoder) need not fit in memory.
        features = np.lib.format.open_memmap(
            scratch / "features.npy", mode="w+", dtype=np.float32,
            shape=(len(decoded.files), detector.feature_dim))
        detector.features(decoded.images, out=features)
        names = [f.relpath for f in decoded.files]
        report_dir = config.report_output or ctx.paths.processing_output("report")
        save_features(report_dir / features_name(ctx), features, names)
        test_and_report(detector, detector_dir, features, names, config, report_dir, ctx,
                        f"drift of {root.name or root} against detector {detector.config.detector_id}",
                        {"input": str(root), "images_found": len(share),
                         "images_used": len(decoded.files), "skipped": decoded.skipped,
                         "features": features_name(ctx),
                         "seconds": {"decode": round(featurise_started - started, 3),
                                     "featurise": round(time.monotonic() - featurise_started, 3)}})
