"""The server's configuration, read from the environment variables SageMaker sets.

Port and timeout come from sagemaker-inference's `Environment` (the variables every SageMaker
serving container honours); the rest are declared below, named in the same style, and checked
with the same rules as every flag and hyperparameter (`shared.schema`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from sagemaker_inference.environment import Environment

from shared import schema
from shared.cpus import default_workers
from shared.data.dataset import MAX_SHARD_ROWS
from shared.errors import UserError
from shared.schema import setting


@dataclass(frozen=True)
class ServerEnvironment:
    """The variables this server reads, by name; each one optional."""

    SAGEMAKER_MODEL_SERVER_WORKERS: int | None = setting(
        None, min=1, help="worker processes (default: one per GPU, else one per CPU)")
    SAGEMAKER_MAX_PAYLOAD_IN_MB: float = setting(6.0, above=0, help="largest request body")
    SAGEMAKER_MICRO_BATCH_SIZE: int = setting(64, min=1, help="images per forward pass")
    SAGEMAKER_TOP_K: int = setting(5, min=1, help="classes listed per prediction")
    SAGEMAKER_SERVER_THREADS_PER_WORKER: int = setting(
        20, min=2, help="connections a worker serves at once (more than its queue, so /ping and"
                        " refusals always find a thread)")
    SAGEMAKER_SERVER_MAX_QUEUE: int = setting(
        16, min=1, help="requests a worker decodes, runs or holds waiting for its model; more get"
                        " 503 with Retry-After")
    SAGEMAKER_SERVER_READ_TIMEOUT: float = setting(60.0, above=0, help="seconds a client may stay"
                                                                       " silent mid-request")
    SAGEMAKER_SERVER_REQUEST_DEADLINE: float = setting(
        120.0, above=0, help="seconds to receive a whole request, however steadily it drips")
    SAGEMAKER_MAX_IMAGES_PER_REQUEST: int = setting(
        MAX_SHARD_ROWS, min=1, help="images in one request (a processed shard holds at most this)")
    SAGEMAKER_MAX_DECODED_MB_PER_REQUEST: float = setting(
        256.0, above=0, help="pixels one request may decode or fit, in MB (3 bytes a pixel)")
    SAGEMAKER_DRIFT_WINDOW: int = setting(
        100, min=2, help="images in the online drift window (when the model carries drift/)")
    SAGEMAKER_DRIFT_EXPECTED_RUN_TIME: float = setting(
        1000.0, above=1, help="requests between false drift alarms on clean traffic, on average")
    SAGEMAKER_CONTAINER_LOG_LEVEL: str = setting(
        "INFO", min_length=1, help="log level: a name (INFO) or SageMaker's number (20)")

    @classmethod
    def read(cls) -> ServerEnvironment:
        names = {f.name for f, _ in schema.fields_of(cls)}
        given = {k: v for k, v in os.environ.items() if k in names and v != ""}
        return schema.from_strings(cls, given, what="environment variable")


schema.check_defaults(ServerEnvironment)


@dataclass(frozen=True)
class ServerSettings:
    port: int
    workers: int
    timeout: int
    max_payload_mb: float
    micro_batch: int
    top_k: int
    threads_per_worker: int
    torch_threads: int
    read_timeout: float  # seconds a request body may go silent before the request gets a 408
    request_deadline: float  # seconds to receive a whole request
    max_queue: int
    max_images: int
    max_decoded_bytes: int
    log_level: int
    drift_window: int
    drift_expected_run_time: float

    @classmethod
    def from_environment(cls) -> ServerSettings:
        env = Environment()
        ours = ServerEnvironment.read()
        import torch

        if ours.SAGEMAKER_SERVER_MAX_QUEUE >= ours.SAGEMAKER_SERVER_THREADS_PER_WORKER:
            raise UserError(
                f"SAGEMAKER_SERVER_MAX_QUEUE ({ours.SAGEMAKER_SERVER_MAX_QUEUE}) must be below"
                f" SAGEMAKER_SERVER_THREADS_PER_WORKER ({ours.SAGEMAKER_SERVER_THREADS_PER_WORKER}):"
                " the threads beyond the queue answer /ping while the model is busy")
        workers = ours.SAGEMAKER_MODEL_SERVER_WORKERS or torch.cuda.device_count() or default_workers()
        return cls(
            port=int(env.inference_http_port),
            workers=workers,
            timeout=int(env.model_server_timeout),
            max_payload_mb=ours.SAGEMAKER_MAX_PAYLOAD_IN_MB,
            micro_batch=ours.SAGEMAKER_MICRO_BATCH_SIZE,
            top_k=ours.SAGEMAKER_TOP_K,
            threads_per_worker=ours.SAGEMAKER_SERVER_THREADS_PER_WORKER,
            # Workers share the cores: each gets its slice, so they do not oversubscribe.
            torch_threads=max(1, default_workers() // workers),
            read_timeout=ours.SAGEMAKER_SERVER_READ_TIMEOUT,
            request_deadline=ours.SAGEMAKER_SERVER_REQUEST_DEADLINE,
            max_queue=ours.SAGEMAKER_SERVER_MAX_QUEUE,
            max_images=ours.SAGEMAKER_MAX_IMAGES_PER_REQUEST,
            max_decoded_bytes=int(ours.SAGEMAKER_MAX_DECODED_MB_PER_REQUEST * 2 ** 20),
            log_level=log_level(ours.SAGEMAKER_CONTAINER_LOG_LEVEL),
            drift_window=ours.SAGEMAKER_DRIFT_WINDOW,
            drift_expected_run_time=ours.SAGEMAKER_DRIFT_EXPECTED_RUN_TIME,
        )

    @property
    def transform_parameters(self) -> dict:
        """/execution-parameters: CreateTransformJob refuses MaxConcurrentTransforms x
        MaxPayloadInMB above 100 MB, so concurrency yields to the payload size."""
        payload = min(100, max(1, int(self.max_payload_mb)))
        return {"MaxConcurrentTransforms": max(1, min(self.workers, TRANSFORM_MB // payload)),
                "BatchStrategy": "MultiRecord", "MaxPayloadInMB": payload}


TRANSFORM_MB = 100


def log_level(text: str) -> int:
    """A level name or number, as SageMaker's SDK passes container_log_level (logging.INFO = 20)."""
    value = text.strip().upper()
    if value.isdigit():
        return int(value)
    if isinstance(logging.getLevelName(value), int):
        return logging.getLevelName(value)
    raise UserError(f"SAGEMAKER_CONTAINER_LOG_LEVEL={text!r} is not a log level; use one of"
                    " DEBUG, INFO, WARNING, ERROR, CRITICAL or their numbers (10-50)")
