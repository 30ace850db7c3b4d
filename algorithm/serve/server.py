"""`algorithm serve`: gunicorn serving the WSGI app, configured the SageMaker way.

Each worker loads the model once after it starts, onto GPU `slot mod n` when there are n GPUs
(a replaced worker takes over the slot, and so the GPU, of the one it replaces). gthread workers
keep slow clients from holding a whole worker, and a client silent for
SAGEMAKER_SERVER_READ_TIMEOUT seconds, or still sending after SAGEMAKER_SERVER_REQUEST_DEADLINE,
is dropped (see worker.py); the model runs one request at a time per worker. On SIGTERM gunicorn
stops accepting, lets in-flight requests finish (up to 20 s) and exits.
"""

from __future__ import annotations

import logging
import os

import torch
from gunicorn.app.base import BaseApplication

from algorithm.serve import memory
from algorithm.serve.app import ServingApp
from algorithm.serve.predictor import Predictor
from algorithm.serve.settings import ServerSettings
from algorithm.serve.worker import TimedSocket, TimedThreadWorker, assign_slot
from shared.sagemaker import JobPaths

log = logging.getLogger(__name__)
GRACEFUL_TIMEOUT = 20
HEARTBEAT_S = 30


class ModelServer(BaseApplication):
    def __init__(self, settings: ServerSettings, host: str) -> None:
        self.settings = settings
        self.host = host
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        TimedSocket.timeout_s = s.read_timeout  # set before the workers fork
        TimedSocket.deadline_s = s.request_deadline
        for key, value in {
            "bind": f"{self.host}:{s.port}",
            "workers": s.workers,
            "worker_class": TimedThreadWorker,  # gthread with a read/write time limit
            "threads": s.threads_per_worker,
            # gunicorn's heartbeat: a worker whose main loop is frozen this long is killed. Requests
            # have their own deadline (app.py), so a short SAGEMAKER_MODEL_SERVER_TIMEOUT must not
            # make a busy machine's slow heartbeat kill workers mid-answer.
            "timeout": max(s.timeout, HEARTBEAT_S),
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "keepalive": 75,  # longer than SageMaker's 60 s idle connection reuse
            "preload_app": False,  # every worker loads its own model after the fork
            "errorlog": "-",
            "loglevel": logging.getLevelName(s.log_level).lower(),
            "pre_fork": assign_slot,
            "proc_name": "algorithm-serve",
            "control_socket_disable": True,  # it would otherwise write a socket under $HOME
        }.items():
            self.cfg.set(key, value)

    def load(self):
        memory.limit_arenas()  # in the worker, before its threads allocate
        torch.set_num_threads(self.settings.torch_threads)
        worker = TimedThreadWorker.current
        slot = getattr(worker, "slot", 0)
        device = torch.device(device_for(slot, torch.cuda.device_count()))
        log.info("worker pid %d, slot %d, serves on %s", os.getpid(), slot, device)
        predictor = Predictor(JobPaths.current().model, self.settings.micro_batch, device,
                              drift=(self.settings.drift_window,
                                     self.settings.drift_expected_run_time)).start()
        return ServingApp(predictor, self.settings, retire=worker.retire if worker else lambda: None)


def device_for(slot: int, gpus: int) -> str:
    """Worker slot i uses GPU i mod n: one worker per GPU by default, each with its own memory."""
    return f"cuda:{slot % gpus}" if gpus else "cpu"


def main(host: str = "0.0.0.0") -> int:
    settings = ServerSettings.from_environment()
    logging.getLogger().setLevel(settings.log_level)
    log.info("serving on %s:%d with %d worker(s), %d torch thread(s) each", host, settings.port,
             settings.workers, settings.torch_threads)
    ModelServer(settings, host).run()
    return 0
