"""The SageMaker runtime context, read in one place: paths, hyperparameters, hosts, failure, stop."""

from shared.sagemaker.failure import (
    JobError,
    JobInterrupted,
    parser_reporting_to,
    run_job,
    write_reason,
)
from shared.sagemaker.hyperparameters import HyperparameterError, HyperparameterSpec, Param
from shared.sagemaker.paths import BASE_DIR_ENV, ProcessingPaths, TrainingPaths, base_dir
from shared.sagemaker.processing import (
    ProcessingContext,
    load_processing_context,
    run_processing_mode,
)
from shared.sagemaker.stop import GracefulStop
from shared.sagemaker.training import TrainingContext, load_training_context

__all__ = [
    "BASE_DIR_ENV",
    "GracefulStop",
    "HyperparameterError",
    "HyperparameterSpec",
    "JobError",
    "JobInterrupted",
    "Param",
    "ProcessingContext",
    "ProcessingPaths",
    "TrainingContext",
    "TrainingPaths",
    "base_dir",
    "load_processing_context",
    "load_training_context",
    "parser_reporting_to",
    "run_job",
    "run_processing_mode",
    "write_reason",
]
