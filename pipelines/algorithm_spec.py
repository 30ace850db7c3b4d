"""The algorithm image as a SageMaker algorithm: the request body of `CreateAlgorithm`.

Everything comes from the image's own declarations: hyperparameters with types, defaults and
ranges (`algorithm.hyperparameters`; those marked tunable are offered to the tuner), the metric
definitions over its log lines and the tuning objectives (`algorithm.metrics`), and the content
types its server accepts and answers with (`algorithm.serve.codecs`). Create it with
`aws sagemaker create-algorithm --cli-input-json file://algorithm.json`, or boto3's
`create_algorithm(**spec)`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from algorithm.hyperparameters import Hyperparameters
from algorithm.metrics import METRIC_DEFINITIONS, TUNING_OBJECTIVES
from algorithm.serve.content_types import ACCEPT_TYPES, CONTENT_TYPES
from shared.errors import UserError
from shared.schema import MISSING, default_of, fields_of, optional_type, rule_of

# SageMaker instance types the image runs on: its CPU code path, and its CUDA one (the image's
# torch wheels carry CUDA 12).
TRAINING_INSTANCES = ("ml.m5.xlarge", "ml.m5.2xlarge", "ml.m5.4xlarge", "ml.c5.2xlarge",
                      "ml.c5.4xlarge", "ml.g4dn.xlarge", "ml.g4dn.2xlarge", "ml.g5.xlarge",
                      "ml.g5.2xlarge", "ml.p3.2xlarge")
INFERENCE_INSTANCES = ("ml.m5.large", "ml.m5.xlarge", "ml.c5.xlarge", "ml.c5.2xlarge",
                       "ml.g4dn.xlarge", "ml.g5.xlarge")
SHARDS = "application/x-npy"  # a processed data set: npy shards and their manifest
CHANNELS = (
    ("train", "processed training images (processing train's output 'train')", True),
    ("validation", "processed validation images; the best epoch is chosen on them", True),
    ("test", "processed test images; evaluation.json is measured on them", False),
    ("model", "a model folder or model.tar.gz to start from (warm start)", False),
)


def _value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def hyperparameter_spec(field: dataclasses.Field, tp: Any) -> dict[str, Any]:
    """One `SupportedHyperParameters` entry from a declared hyperparameter."""
    rule, default = rule_of(field), default_of(field)
    tp, _ = optional_type(tp)  # an optional one is simply not required
    entry: dict[str, Any] = {"Name": field.name, "Description": rule.help[:170],
                             "IsRequired": default is MISSING}
    if tp is bool or rule.choices is not None:
        values = ["true", "false"] if tp is bool else [_value(c) for c in rule.choices]
        entry.update(Type="Categorical",
                     Range={"CategoricalParameterRangeSpecification": {"Values": values}})
    elif tp in (int, float):
        entry["Type"] = "Integer" if tp is int else "Continuous"
        low = rule.min if rule.min is not None else rule.above
        high = rule.max if rule.max is not None else rule.below
        if low is not None and high is not None:
            kind = ("IntegerParameterRangeSpecification" if tp is int
                    else "ContinuousParameterRangeSpecification")
            entry["Range"] = {kind: {"MinValue": _value(tp(low)), "MaxValue": _value(tp(high))}}
    else:
        entry["Type"] = "FreeText"
    # a tuner needs a range to search: only declared-tunable fields that have one are offered
    entry["IsTunable"] = bool(rule.tunable and "Range" in entry)
    if default is not MISSING and default is not None:
        entry["DefaultValue"] = _value(default)
    return entry


def algorithm_spec(image_uri: str, name: str = "image-classifier") -> dict[str, Any]:
    """The `CreateAlgorithm` request for the algorithm image at `image_uri`."""
    return {
        "AlgorithmName": name,
        "AlgorithmDescription": "Image classification with timm models (PyTorch Lightning):"
                                " training on processed image shards, real-time and batch"
                                " inference with top-k probabilities.",
        "TrainingSpecification": {
            "TrainingImage": image_uri,
            "SupportedHyperParameters": [hyperparameter_spec(f, tp)
                                         for f, tp in fields_of(Hyperparameters)],
            "SupportedTrainingInstanceTypes": list(TRAINING_INSTANCES),
            "SupportsDistributedTraining": True,
            "MetricDefinitions": [dict(m) for m in METRIC_DEFINITIONS],
            "TrainingChannels": [
                {"Name": channel, "Description": text, "IsRequired": required,
                 "SupportedContentTypes": [SHARDS], "SupportedCompressionTypes": ["None"],
                 "SupportedInputModes": ["File"]} for channel, text, required in CHANNELS],
            "SupportedTuningJobObjectiveMetrics": [dict(o) for o in TUNING_OBJECTIVES],
        },
        "InferenceSpecification": {
            "Containers": [{"Image": image_uri}],
            "SupportedTransformInstanceTypes": list(INFERENCE_INSTANCES),
            "SupportedRealtimeInferenceInstanceTypes": list(INFERENCE_INSTANCES),
            "SupportedContentTypes": list(CONTENT_TYPES),
            "SupportedResponseMIMETypes": list(ACCEPT_TYPES),
        },
        "CertifyForMarketplace": False,
    }


def image_uri_from(images: Path) -> str:
    """The algorithm image's URI from the map `make image-uris` writes."""
    uris = json.loads(Path(images).read_text())
    if "algorithm" not in uris:
        raise UserError(f"{images} names no algorithm image (it has: {', '.join(uris)});"
                        " write it with make image-uris")
    return uris["algorithm"]
