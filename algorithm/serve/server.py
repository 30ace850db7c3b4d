"""`algorithm serve`: gunicorn serving the WSGI app, configured the SageMaker way.

Each worker loads the model once after it starts. gthread workers keep slow clients from holding
a whole worker, and a client silent for SAGEMAKER_SERVER_READ_TIMEOUT seconds is dropped (see
worker.py); the model runs one request at a time per worker. On SIGTERM gunicorn stops
accepting, lets in-flight requests finish (up to 20 s) and exits.
"""

from __future__ import annotations

import logging

import torch
from gunicorn.app.base import BaseApplication

from algorithm.serve.app import ServingApp
from algorithm.serve.predictor import Predictor
from algorithm.serve.settings import ServerSettings
from algorithm.serve.worker import TimedSocket, TimedThreadWorker
from shared.sagemaker import JobPaths

log = logging.getLogger(__name__)
GRACEFUL_TIMEOUT = 20


class ModelServer(BaseApplication):
    def __init__(self, settings: ServerSettings, host: str) -> None:
        self.settings = settings
        self.host = host
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        TimedSocket.timeout_s = s.read_timeout  # set before the workers fork
        for key, value in {
            "bind": f"{self.host}:{s.port}",
            "workers": s.workers,
            "worker_class": TimedThreadWorker,  # gthread with a read/write time limit
            "threads": s.threads_per_worker,
            "timeout": s.timeout,
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "keepalive": 75,  # longer than SageMaker's 60 s idle connection reuse
            "preload_app": False,  # every worker loads its own model after the fork
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "algorithm-serve",
            "control_socket_disable": True,  # it would otherwise write a socket under $HOME
        }.items():
            self.cfg.set(key, value)

    def load(self):
        torch.set_num_threads(self.settings.torch_threads)
        predictor = Predictor(JobPaths.current().model, self.settings.micro_batch).start()
        return ServingApp(predictor, self.settings)


def main(host: str = "0.0.0.0") -> int:
    settings = ServerSettings.from_environment()
    log.info("serving on %s:%d with %d worker(s), %d torch thread(s) each", host, settings.port,
             settings.workers, settings.torch_threads)
    ModelServer(settings, host).run()
    return 0
