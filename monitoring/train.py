"""`monitoring train`: raw reference images -> a drift detector folder that serve mode loads.

Reads any folder tree of images (labelled or not; the training images, not augmented ones),
subsamples a large set reproducibly, encodes the images and fits the MMD detector. Several hosts
would all fit the same detector, so only the first host works and the others finish at once.
"""

from __future__ import annotations

import logging
import time

from monitoring.config import DEFAULT_IMAGE_SIZE, TrainConfig
from shared.data import decode_usable, list_images, scratch_folder
from shared.drift import UNTRAINED, DriftDetector, classifier_encoder, reference_sample, untrained_encoder
from shared.drift.mmd import MIN_SAMPLES
from shared.models import default_device
from shared.sagemaker import JobError, load_processing_context

log = logging.getLogger(__name__)


def run(config: TrainConfig) -> None:
    started = time.monotonic()
    ctx = load_processing_context()
    device = default_device()
    root = config.input or ctx.paths.processing_input("data")
    if config.input is None and ctx.input_config("data").sharded and ctx.host_count > 1:
        raise JobError("the reference input 'data' is ShardedByS3Key on several hosts, but the"
                       " detector is fitted on one host from the whole reference: give it"
                       " FullyReplicated, or run the job on one instance")
    if ctx.host_index > 0:
        log.info("host %s: the detector is fitted on the first host only; nothing to do",
                 ctx.current_host)
        return
    files = list_images(root)
    if not files:
        raise JobError(f"no reference images in {root} (looked for .jpg .jpeg .png .bmp .gif .webp"
                       " .tif .tiff in any folder below it)")
    if config.encoder != UNTRAINED:
        model = config.model or ctx.paths.processing_input("model")
        if not model.exists():
            raise JobError(f"--encoder {config.encoder} needs a trained model at {model} (a folder"
                           " with model.safetensors and model.json, or a model.tar.gz): none found")
        encoder = classifier_encoder(model, config.image_size, device=device, kind=config.encoder)
    else:
        encoder = untrained_encoder(config.image_size or DEFAULT_IMAGE_SIZE, seed=config.seed,
                                    device=device)
    chosen = [files[i] for i in reference_sample(len(files), config.reference_size, config.seed)]
    if len(chosen) < len(files):
        log.info("using a seeded sample of %d of the %d reference images", len(chosen), len(files))
    with scratch_folder(ctx.paths.scratch_root) as scratch:
        decoded = decode_usable(chosen, size=encoder.image_size, policy=encoder.spec.resize_policy,
                                workers=config.decode_workers, into=scratch, what="reference",
                                min_images=MIN_SAMPLES)
        encoder.adapt(decoded.images)
        features = encoder.encode(decoded.images)
    info = {"source": str(root), "images_found": len(files), "images_sampled": len(chosen),
            "images_used": len(decoded.files), "skipped": decoded.skipped[:100],
            "skipped_count": len(decoded.skipped), "reference_size": config.reference_size}
    detector = DriftDetector.from_features(encoder, features, p_value=config.p_value,
                                           permutations=config.permutations, seed=config.seed,
                                           reference_info=info)
    output = config.output or ctx.paths.processing_output("detector")
    detector.save(output)
    log.info("detector %s (%s encoder, %d reference images, sigma %s) written to %s in %.1f s",
             detector.config.detector_id, encoder.spec.kind, len(features),
             ", ".join(f"{s:.4g}" for s in detector.config.sigma), output, time.monotonic() - started)
