"""`monitoring train`: raw reference images -> a drift detector folder that serve mode loads.

Reads any folder tree of images (labelled or not; the training images, not augmented ones),
subsamples a large set reproducibly, encodes the images and fits the MMD detector. Several hosts
would all fit the same detector, so only the first host works and the others finish at once.
"""

from __future__ import annotations

import argparse
import logging
import time

from monitoring.images import decode_all
from shared.data import default_workers, list_images, scratch_folder
from shared.drift import MODEL, DriftDetector, classifier_encoder, reference_sample, untrained_encoder
from shared.sagemaker import JobError, ProcessingContext

log = logging.getLogger(__name__)
DEFAULT_IMAGE_SIZE = 32


def run(args: argparse.Namespace, ctx: ProcessingContext, device: str) -> None:
    started = time.monotonic()
    if ctx.host_index > 0:
        log.info("host %s: the detector is fitted on the first host only; nothing to do",
                 ctx.current_host)
        return
    root = args.input or ctx.paths.input("data")
    files = list_images(root)
    if not files:
        raise JobError(f"no reference images in {root} (looked for .jpg .jpeg .png .bmp .gif .webp"
                       " .tif .tiff in any folder below it)")
    if args.encoder == MODEL:
        model = args.model or ctx.paths.input("model")
        if not model.exists():
            raise JobError(f"--encoder model needs a trained model at {model} (a folder with"
                           " model.safetensors and model.json, or a model.tar.gz): none found")
        encoder = classifier_encoder(model, args.image_size, device=device)
    else:
        encoder = untrained_encoder(args.image_size or DEFAULT_IMAGE_SIZE, seed=args.seed,
                                    device=device)
    chosen = [files[i] for i in reference_sample(len(files), args.reference_size, args.seed)]
    if len(chosen) < len(files):
        log.info("using a seeded sample of %d of the %d reference images", len(chosen), len(files))
    with scratch_folder(ctx.paths.base / "processing") as scratch:
        decoded = decode_all(chosen, size=encoder.image_size, policy=encoder.spec.resize_policy,
                             workers=args.workers or default_workers(), scratch=scratch,
                             what="reference")
        features = encoder.encode(decoded.images)
    info = {"source": str(root), "images_found": len(files), "images_sampled": len(chosen),
            "images_used": len(decoded.files), "skipped": decoded.skipped[:100],
            "skipped_count": len(decoded.skipped), "reference_size": args.reference_size}
    detector = DriftDetector.from_features(encoder, features, p_value=args.p_value,
                                           permutations=args.permutations, seed=args.seed,
                                           reference_info=info)
    output = args.output or ctx.paths.output("detector")
    detector.save(output)
    log.info("detector %s (%s encoder, %d reference images, sigma %s) written to %s in %.1f s",
             detector.config.detector_id, encoder.spec.kind, len(features),
             ", ".join(f"{s:.4g}" for s in detector.config.sigma), output, time.monotonic() - started)
