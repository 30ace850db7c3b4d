"""How SageMaker hands a job each of its inputs: whole to every host, or split among them.

A Processing input (`config/processingjobconfig.json`, `ProcessingInputs`) or a training channel
(`input/config/inputdataconfig.json`) is either `FullyReplicated` (every host gets all of it, and
each host takes its own share) or `ShardedByS3Key` (SageMaker already split it by S3 key: what a
host received is its share, all of which it must process). Its mode is `File`, `FastFile` (both
plain files here) or `Pipe` (a FIFO per epoch, which these jobs cannot read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FULLY_REPLICATED = "FullyReplicated"
SHARDED = "ShardedByS3Key"
PIPE = "Pipe"


@dataclass(frozen=True)
class InputConfig:
    name: str
    distribution: str = FULLY_REPLICATED
    mode: str = "File"

    @property
    def sharded(self) -> bool:
        return self.distribution == SHARDED


def processing_inputs(job_config: dict[str, Any]) -> dict[str, InputConfig]:
    """The inputs of processingjobconfig.json, by InputName (S3 inputs and dataset definitions)."""
    inputs = {}
    for entry in job_config.get("ProcessingInputs") or []:
        source = entry.get("S3Input") or entry.get("DatasetDefinition") or {}
        inputs[entry["InputName"]] = InputConfig(
            entry["InputName"],
            source.get("S3DataDistributionType") or source.get("DataDistributionType")
            or FULLY_REPLICATED,
            source.get("S3InputMode") or source.get("InputMode") or "File")
    return inputs


def training_channels(input_data_config: dict[str, Any]) -> dict[str, InputConfig]:
    """The channels of inputdataconfig.json, by name."""
    return {name: InputConfig(name, (entry or {}).get("S3DistributionType") or FULLY_REPLICATED,
                              (entry or {}).get("TrainingInputMode") or "File")
            for name, entry in input_data_config.items()}
