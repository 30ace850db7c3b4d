"""The server's configuration, read from the environment variables SageMaker sets.

Port, workers and timeout come from sagemaker-inference's `Environment` (the variables every
SageMaker serving container honours); the rest are this server's own, named in the same style.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sagemaker_inference.environment import Environment

from shared.data import default_workers


def _positive(name: str, default: float, cast=int):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {cast.__name__}") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value


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
        import torch

        gpus = torch.cuda.device_count()
        workers = _positive("SAGEMAKER_MODEL_SERVER_WORKERS", gpus or default_workers())
        return cls(
            port=int(env.inference_http_port),
            workers=workers,
            timeout=int(env.model_server_timeout),
            max_payload_mb=_positive("SAGEMAKER_MAX_PAYLOAD_IN_MB", 6.0, float),
            micro_batch=_positive("SAGEMAKER_MICRO_BATCH_SIZE", 64),
            top_k=_positive("SAGEMAKER_TOP_K", 5),
            threads_per_worker=_positive("SAGEMAKER_SERVER_THREADS_PER_WORKER", 4),
            # Workers share the cores: each gets its slice, so they do not oversubscribe.
            torch_threads=max(1, default_workers() // workers),
            read_timeout=_positive("SAGEMAKER_SERVER_READ_TIMEOUT", 60.0, float),
        )
