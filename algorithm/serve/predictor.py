"""The model inside one server worker: loaded once, in the background, then used for every request."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import torch

from shared.models import ModelConfig, Normalise, load_artifact

log = logging.getLogger(__name__)


class Predictor:
    """Loads the artifact on a background thread so /ping can answer 503 until it is ready.

    A missing model folder is waited for (a local run may start the server first); a model that
    exists but cannot be loaded is a permanent failure, reported by /ping. Each worker loads its
    own copy, so a request can reach a worker still loading after another one answered /ping: it
    waits for that load (`wait_if_loading`) instead of failing.
    """

    def __init__(self, model_path: Path, micro_batch: int = 64) -> None:
        self.model_path = Path(model_path)
        self.micro_batch = micro_batch
        self.model: torch.nn.Module | None = None
        self.config: ModelConfig | None = None
        self.error: str | None = None
        self.loading = False  # an artifact is there and being read
        self._settled = threading.Event()  # loading ended, with a model or an error
        self._lock = threading.Lock()  # one forward pass at a time per worker: no oversubscription
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def ready(self) -> bool:
        return self.model is not None

    def start(self) -> Predictor:
        self.loading = self._has_artifact()  # before the worker accepts its first request
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        return self

    def wait_if_loading(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) for a load under way; True once the model is ready."""
        if self.loading and not self.ready:
            self._settled.wait(timeout)
        return self.ready

    def _has_artifact(self) -> bool:
        path = self.model_path
        return path.is_file() or (path.is_dir() and any(path.iterdir()))

    def _load(self) -> None:
        waited = False
        while not self._has_artifact():
            if not waited:
                log.warning("waiting for a model artifact at %s", self.model_path)
                waited = True
            time.sleep(0.5)
        self.loading = True
        try:
            model, config = load_artifact(self.model_path)
            self.config = config
            self.model = torch.nn.Sequential(Normalise(config.mean, config.std), model).eval().to(
                self.device)
        except Exception as exc:  # any failure must show on /ping rather than kill the worker
            self.error = f"the model could not be loaded: {exc}"
            log.error(self.error)
            return
        finally:
            self.loading = False
            self._settled.set()
        log.info("model loaded: %s, %d classes, input %dx%d", config.architecture,
                 config.num_classes, config.input_size, config.input_size)

    def load_now(self) -> Predictor:
        """Load in the calling thread (benchmarks, the pipeline runner)."""
        self._load()
        if self.error:
            raise RuntimeError(self.error)
        return self

    @torch.inference_mode()
    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for uint8 N x S x S x 3 images, run in bounded micro-batches."""
        assert self.model is not None
        out = []
        with self._lock:
            for start in range(0, len(images), self.micro_batch):
                chunk = torch.from_numpy(images[start:start + self.micro_batch])
                logits = self.model(chunk.permute(0, 3, 1, 2).to(self.device))
                out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return np.concatenate(out)
