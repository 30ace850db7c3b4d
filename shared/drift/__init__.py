"""MMD data drift on images: the library's own interface over alibi-detect.

    encoder = untrained_encoder(image_size=32, seed=0)        # or classifier_encoder(model_path)
    detector = DriftDetector.fit(encoder, reference_images)   # N x S x S x 3 uint8
    result = detector.test(production_images)                 # result.drift, .p_value, .distance
    detector.save(folder); DriftDetector.load(folder)

Components use only this interface. It computes what alibi-detect's MMDDrift computes (bandwidth,
kernel, statistic, p-value) without importing it; alibi-detect (Business Source License) is imported
by `shared.drift.alibi` alone, which the tests and benchmarks use to check the figures.
"""

from shared.drift.detector import DriftDetector, DriftResult, Window, reference_sample, windows
from shared.drift.encoders import (
    MODEL,
    SOFTMAX,
    STAGES,
    UNTRAINED,
    Encoder,
    EncoderFormatError,
    EncoderSpec,
    classifier_encoder,
    untrained_encoder,
)
from shared.drift.mmd import MMDResult, permutation_test
from shared.drift.storage import FORMAT_VERSION, DetectorConfig, DetectorFormatError

__all__ = [
    "DetectorConfig",
    "DetectorFormatError",
    "DriftDetector",
    "DriftResult",
    "Encoder",
    "EncoderFormatError",
    "EncoderSpec",
    "FORMAT_VERSION",
    "MMDResult",
    "MODEL",
    "SOFTMAX",
    "STAGES",
    "UNTRAINED",
    "Window",
    "classifier_encoder",
    "permutation_test",
    "reference_sample",
    "untrained_encoder",
    "windows",
]
