"""The SageMaker runtime context, read in one place: paths, hosts, failure, stop, entrypoints."""

from shared.sagemaker.failure import JobError, JobInterrupted, run_job, write_reason
from shared.sagemaker.paths import (
    BASE_DIR_ENV,
    JobPaths,
    base_dir,
    per_host_name,
)
from shared.sagemaker.processing import ProcessingContext, load_processing_context
from shared.sagemaker.stop import GracefulStop
from shared.sagemaker.training import TrainingContext, load_training_context

__all__ = [
    "BASE_DIR_ENV",
    "GracefulStop",
    "JobError",
    "JobInterrupted",
    "JobPaths",
    "ProcessingContext",
    "TrainingContext",
    "base_dir",
    "load_processing_context",
    "load_training_context",
    "per_host_name",
    "run_job",
    "write_reason",
]
