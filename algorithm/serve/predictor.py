"""The model inside one server worker: loaded once, in the background, then used for every request."""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shared.choices import MODEL_DRIFT_FOLDER
from shared.data import fit_square
from shared.drift import MODEL, DriftDetector
from shared.drift.online import OnlineMMD, OnlineState
from shared.errors import MissingInputError
from shared.models import ImageClassifier, ModelConfig, default_device, load_artifact

log = logging.getLogger(__name__)
POLL_S = 0.5  # how often a missing or changing artifact is looked at again


class Predictor:
    """Loads the artifact on a background thread so /ping can answer 503 until it is ready.

    A missing or incomplete model is waited for (a local run may start the server first, or
    while the model is still being written: hidden temporaries are not the model, and a model
    folder is whole once its model.json is there). A model that cannot be loaded and has stopped
    changing is a permanent failure, reported by /ping. Each worker loads its own copy, so a request
    can reach a worker still loading after another one answered /ping: it waits for that load
    (`wait_if_loading`) instead of failing.
    """

    def __init__(self, model_path: Path, micro_batch: int = 64,
                 device: torch.device | None = None,
                 drift: tuple[int, float] | None = None) -> None:
        self.model_path = Path(model_path)
        self.micro_batch = micro_batch
        self.model: ImageClassifier | None = None
        self.drift_settings = drift  # (window, expected run time): watch drift if the model can
        self.drift: OnlineDrift | None = None
        self.error: str | None = None
        self.loading = False  # an artifact is there and being read
        self._settled = threading.Event()  # loading ended, with a model or an error
        self._lock = threading.Lock()  # one forward pass at a time per worker: no oversubscription
        self.device = device or default_device()
        self._jobs: queue.SimpleQueue[tuple[np.ndarray, Future]] = queue.SimpleQueue()
        self._runner: threading.Thread | None = None
        self._runner_lock = threading.Lock()
        self._busy_since: float | None = None  # when the running forward pass started

    @property
    def ready(self) -> bool:
        return self.model is not None

    @property
    def config(self) -> ModelConfig:
        assert self.model is not None
        return self.model.config

    def start(self) -> Predictor:
        self.loading = self._has_artifact()  # before the worker accepts its first request
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        return self

    def wait_if_loading(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) for a load under way; True once the model is ready."""
        if self.loading and not self.ready:
            self._settled.wait(timeout)
        return self.ready

    def _state(self) -> list[tuple[str, int, int]]:
        """Name, size and modification time of what the artifact path holds (hidden files aside)."""
        path = self.model_path
        if path.is_file():
            return [(path.name, path.stat().st_size, path.stat().st_mtime_ns)]
        if not path.is_dir():
            return []
        entries = []
        for p in sorted(path.iterdir()):
            if not p.name.startswith("."):
                try:
                    stat = p.stat()
                except FileNotFoundError:  # replaced while we looked
                    continue
                entries.append((p.name, stat.st_size, stat.st_mtime_ns))
        return entries

    def _has_artifact(self) -> bool:
        return bool(self._state())

    def _load(self) -> None:
        said = ""
        while True:
            state = self._state()
            if state:
                self.loading = True
                try:
                    model = load_artifact(self.model_path).place(self.device)
                    break
                except MissingInputError as exc:  # not whole yet: model.json is written last
                    reason = str(exc)
                except Exception as exc:  # corrupt, or caught mid-copy: tell them apart by waiting
                    time.sleep(POLL_S)
                    if self._state() == state:
                        self._fail(f"the model could not be loaded: {exc}")
                        return
                    reason = f"{self.model_path} is still being written"
                self.loading = False
            else:
                reason = f"no model artifact at {self.model_path} yet"
            if reason != said:
                log.warning("waiting for the model: %s", reason)
                said = reason
            time.sleep(POLL_S)
        config = model.config
        if self.drift_settings and (self.model_path / MODEL_DRIFT_FOLDER).is_dir():
            try:
                self.drift = OnlineDrift.load(self.model_path / MODEL_DRIFT_FOLDER, model,
                                              *self.drift_settings)
            except Exception as exc:  # a model whose drift part is broken is not served half-watched
                self._fail(f"the drift detector packaged with the model could not be loaded: {exc}")
                return
        # after the detector has compared its encoder's weights with the model's as saved
        self.model = model.for_serving()
        self.loading = False
        self._settled.set()
        log.info("model loaded: %s, %d classes, input %dx%d", config.architecture,
                 config.num_classes, config.input_size, config.input_size)

    def _fail(self, error: str) -> None:
        """A permanent failure: /ping reports it; requests get a 503 with it."""
        self.error = error
        log.error(error)
        self.loading = False
        self._settled.set()

    def load_now(self) -> Predictor:
        """Load in the calling thread (benchmarks, the pipeline runner)."""
        self._load()
        if self.error:
            raise RuntimeError(self.error)
        return self

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for uint8 N x S x S x 3 images, run in bounded micro-batches."""
        assert self.model is not None
        with self._lock:
            return self.model.probabilities(images, self.micro_batch)

    def predict_within(self, images: np.ndarray,
                       timeout: float) -> tuple[np.ndarray, OnlineState | None]:
        """`predict` (and the online drift test, when the model carries a detector) on the worker's
        inference thread; InferenceTimeout when no answer came within `timeout` seconds (queueing
        included). The forward pass cannot be cut short: `stuck` says whether the one running has
        outlived the deadline, so the worker can be replaced."""
        with self._runner_lock:  # not the forward pass's lock: a stuck pass must not block this
            if self._runner is None:
                self._runner = threading.Thread(target=self._run_jobs, name="inference",
                                                daemon=True)  # a stuck one must not block exit
                self._runner.start()
        future: Future = Future()
        self._jobs.put((images, future))
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()  # still queued: never run it
            raise InferenceTimeout(f"no answer within {timeout:g} s") from None

    def predict_and_observe(self, images: np.ndarray) -> tuple[np.ndarray, OnlineState | None]:
        """Probabilities, and the online drift state after these images when the model watches;
        a detector on this very model's features shares its forward pass."""
        if self.drift is None:
            return self.predict(images), None
        if not self.drift.shares_model:
            return self.predict(images), self.drift.observe(images)
        assert self.model is not None
        with self._lock:
            probabilities, features = self.model.probabilities_and_features(images,
                                                                            self.micro_batch)
        return probabilities, self.drift.online.update(features)

    def stuck(self, timeout: float) -> bool:
        started = self._busy_since
        return started is not None and time.monotonic() - started > timeout

    def _run_jobs(self) -> None:
        while True:
            images, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            self._busy_since = time.monotonic()
            try:
                future.set_result(self.predict_and_observe(images))
            except BaseException as exc:  # reaches the request thread, which answers 500
                future.set_exception(exc)
            finally:
                self._busy_since = None


class OnlineDrift:
    """The drift detector packaged with a model (`drift/`, as `monitoring train` writes one),
    testing a sliding window of served images online (`shared.drift.online`)."""

    def __init__(self, detector: DriftDetector, online: OnlineMMD, shares_model: bool) -> None:
        self.detector = detector
        self.online = online
        self.shares_model = shares_model  # its encoder is the served model: one forward pass

    @classmethod
    def load(cls, folder: Path, model: ImageClassifier, window: int, ert: float) -> OnlineDrift:
        detector = DriftDetector.load(folder, model.device)
        online = OnlineMMD.calibrate(detector.reference, detector.config.sigma, window, ert,
                                     seed=detector.config.seed)
        shares = is_same_model(detector, model)
        log.info("online drift: detector %s (%s), window %d images, threshold %.4g (one false"
                 " alarm per %g requests on clean traffic)", detector.config.detector_id,
                 "the model's own features, one forward pass" if shares
                 else f"{detector.config.encoder.kind} encoder", window, online.threshold, ert)
        return cls(detector, online, shares)

    def observe(self, images: np.ndarray) -> OnlineState:
        size = self.detector.image_size
        if images.shape[1] != size:  # the detector's own input size: refit the model-sized images
            images = np.stack([np.asarray(fit_square(Image.fromarray(a), size,
                                                     self.detector.resize_policy)) for a in images])
        return self.online.update(self.detector.features(images))


def is_same_model(detector: DriftDetector, model: ImageClassifier) -> bool:
    """Whether the detector encodes with the served model itself (a `model` encoder made from it:
    same architecture, input size, normalisation and weights), so its features come for free."""
    spec, config = detector.config.encoder, model.config
    if (spec.kind != MODEL or spec.architecture != config.architecture
            or spec.image_size != config.input_size or list(spec.mean) != list(config.mean)
            or list(spec.std) != list(config.std)):
        return False
    theirs = detector.encoder.network.network.state_dict()
    ours = model.network.state_dict()
    return (theirs.keys() == ours.keys()
            and all(torch.equal(theirs[k].cpu(), ours[k].cpu()) for k in ours)
            and model.head_is_classifier())


class InferenceTimeout(Exception):
    """A request's forward pass did not finish within SAGEMAKER_MODEL_SERVER_TIMEOUT."""
