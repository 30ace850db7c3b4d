"""The server's configuration, read from the environment variables SageMaker sets.

Port and timeout come from sagemaker-inference's `Environment` (the variables every SageMaker
serving container honours); the rest are declared below, named in the same style, and checked
with the same rules as every flag and hyperparameter (`shared.schema`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sagemaker_inference.environment import Environment

from shared import schema
from shared.cpus import default_workers
from shared.schema import setting


@dataclass(frozen=True)
class ServerEnvironment:
    """The variables this server reads, by name; each one optional."""

    SAGEMAKER_MODEL_SERVER_WORKERS: int | None = setting(
        None, min=1, help="worker processes (default: one per GPU, else one per CPU)")
    SAGEMAKER_MAX_PAYLOAD_IN_MB: float = setting(6.0, above=0, help="largest request body")
    SAGEMAKER_MICRO_BATCH_SIZE: int = setting(64, min=1, help="images per forward pass")
    SAGEMAKER_TOP_K: int = setting(5, min=1, help="classes listed per prediction")
    SAGEMAKER_SERVER_THREADS_PER_WORKER: int = setting(4, min=1, help="requests a worker holds")
    SAGEMAKER_SERVER_READ_TIMEOUT: float = setting(60.0, above=0, help="seconds a client may stay"
                                                                       " silent mid-request")

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

    @classmethod
    def from_environment(cls) -> ServerSettings:
        env = Environment()
        ours = ServerEnvironment.read()
        import torch

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
        )
