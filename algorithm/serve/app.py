"""The WSGI app: SageMaker's serving contract, errors as JSON with the right status code.

Work per request is bounded: the body by SAGEMAKER_MAX_PAYLOAD_IN_MB, the images and their pixels
by the codecs' Limits, the requests a worker holds for its model by SAGEMAKER_SERVER_MAX_QUEUE
(more get 503 with Retry-After), and the wait for an answer by SAGEMAKER_MODEL_SERVER_TIMEOUT
(then 504; a forward pass stuck past it retires the worker, and gunicorn starts a fresh one).
Decoding runs one request at a time per worker, beside the forward pass of another.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import BinaryIO

from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from algorithm.serve import codecs, memory
from algorithm.serve.access import CUSTOM_ATTRIBUTES, AccessLog, custom_top_k, drift_attributes
from algorithm.serve.predictor import InferenceTimeout, Predictor
from algorithm.serve.settings import ServerSettings
from algorithm.serve.worker import SilentClient, SlowClient
from shared.drift.online import OnlineState

log = logging.getLogger(__name__)
# An oversized body up to this many times the limit is read and dropped before the 413 goes out:
# a client that sends its whole body before reading (most do) then gets the 413 instead of a reset,
# and the connection stays usable. Larger bodies are answered at once and the connection closed.
DRAIN_FACTOR = 4
RETRY_AFTER_S = 1
IMAGES_KEY = "algorithm.serve.images"  # in the WSGI environ: how many images a request held
DRIFT_KEY = "algorithm.serve.drift"  # and the online drift state after it
LOAD_FAILED = "the model could not be loaded (the server's log says why)"


def json_response(data: object, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def error(message: str, status: int) -> Response:
    return json_response({"error": message}, status)


def discard(stream: BinaryIO, limit: int) -> bool:
    """Read and drop up to `limit` bytes of a request body; True when the body ended within them."""
    left = limit
    try:
        while left > 0:
            chunk = stream.read(min(left, 1 << 20))
            if not chunk:
                return True
            left -= len(chunk)
    except OSError:  # the client hung up or fell silent: the connection closes anyway
        return False
    return False


class ServingApp:
    def __init__(self, predictor: Predictor, settings: ServerSettings, retire=lambda: None) -> None:
        self.predictor = predictor
        self.settings = settings
        self.retire = retire  # called when a forward pass is stuck past the deadline
        self.max_bytes = int(settings.max_payload_mb * 1024 * 1024)
        self.limits = codecs.Limits(settings.max_images, settings.max_decoded_bytes)
        self.default_accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", codecs.JSON)
        self.queue = threading.BoundedSemaphore(settings.max_queue)
        self.queued = 0  # requests holding a queue place, for the metrics
        self.counting = threading.Lock()
        self.drifting = False  # in a drift episode, as the last test said
        self.decoding = threading.Lock()  # one decode at a time: its memory is bounded per worker
        self.access = AccessLog()

    def __call__(self, environ, start_response):
        started = time.monotonic()
        request = Request(environ)
        request.max_content_length = self.max_bytes
        try:
            response = self.route(request)
        except RequestEntityTooLarge:
            discard(environ["wsgi.input"], DRAIN_FACTOR * self.max_bytes)
            response = error(f"the request body is larger than {self.settings.max_payload_mb} MB"
                             " (SAGEMAKER_MAX_PAYLOAD_IN_MB)", 413)
        except ClientDisconnected as exc:  # the client hung up or fell silent: not a server fault
            if isinstance(exc.__context__, SlowClient):
                response = error(f"the request had not arrived after {self.settings.request_deadline}"
                                 " s (SAGEMAKER_SERVER_REQUEST_DEADLINE)", 408)
            elif isinstance(exc.__context__, SilentClient):
                response = error(f"the request body stopped arriving for {self.settings.read_timeout}"
                                 " s (SAGEMAKER_SERVER_READ_TIMEOUT)", 408)
            else:
                response = error("the client disconnected before the whole body arrived", 400)
        except HTTPException as exc:
            response = error(exc.description or exc.name, exc.code or 400)
        except Exception:  # a real server fault: log it, never leak a traceback
            log.exception("error while handling %s %r", request.method, request.path)
            response = error("internal server error", 500)
        self.access.write(request, response, environ.get(IMAGES_KEY, 0), time.monotonic() - started,
                          self.queued, environ.get(DRIFT_KEY))
        return response(environ, start_response)

    def route(self, request: Request) -> Response:
        routes = {"/ping": ("GET", self.ping), "/invocations": ("POST", self.invocations),
                  "/execution-parameters": ("GET", self.execution_parameters)}
        if request.path not in routes:
            return error(f"no such path {request.path!r}; use /ping, /invocations,"
                         " /execution-parameters", 404)
        method, handler = routes[request.path]
        if request.method != method and not (method == "GET" and request.method == "HEAD"):
            return error(f"{request.path} takes {method}", 405)
        return handler(request)

    def ping(self, request: Request) -> Response:
        if self.predictor.ready:
            return json_response({"status": "healthy"})
        if self.predictor.error:  # the reason names files: it goes to the log, not to callers
            return json_response({"status": "failed", "error": LOAD_FAILED}, 503)
        return json_response({"status": "loading"}, 503)

    def execution_parameters(self, request: Request) -> Response:
        return json_response(self.settings.transform_parameters)

    def accept_type(self, request: Request) -> str | None:
        header = request.headers.get("Accept", "").strip()
        if not header or header == "*/*":
            return self.default_accept
        return request.accept_mimetypes.best_match(codecs.ACCEPT_TYPES)

    def invocations(self, request: Request) -> Response:
        content_type = (request.mimetype or "").lower()
        if content_type not in codecs.CONTENT_TYPES:
            return error(f"unsupported Content-Type {content_type or '(none)'!r}; use one of "
                         + ", ".join(codecs.CONTENT_TYPES), 415)
        accept = self.accept_type(request)
        if accept is None:
            return error(f"cannot answer with Accept {request.headers.get('Accept')!r}; use "
                         + " or ".join(codecs.ACCEPT_TYPES), 406)
        try:
            k = custom_top_k(request.headers, self.settings.top_k)
        except ValueError as exc:
            return error(str(exc), 400)
        if not self.predictor.wait_if_loading(self.settings.timeout):
            return error(LOAD_FAILED if self.predictor.error else "the model is still loading", 503)
        config = self.predictor.config
        body = request.get_data(cache=False)
        if not self.queue.acquire(blocking=False):
            response = error(f"this worker already holds {self.settings.max_queue} requests"
                             " (SAGEMAKER_SERVER_MAX_QUEUE); retry shortly", 503)
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
        with self.counting:
            self.queued += 1
        decoder = codecs.Decoder(config, self.limits)
        try:
            with self.decoding:
                batch = decoder.decode(content_type, body)
            request.environ[IMAGES_KEY] = len(batch.images)
            probabilities, drift = self.predictor.predict_within(batch.images,
                                                                  self.settings.timeout)
        except codecs.PayloadError as exc:
            return error(str(exc), exc.status)
        except MemoryError:
            return error("the request needs more memory than this worker has", 413)
        except InferenceTimeout:
            if self.predictor.stuck(self.settings.timeout):
                log.error("a forward pass has run longer than %d s: retiring this worker",
                          self.settings.timeout)
                self.retire()
            return error(f"no answer within {self.settings.timeout} s"
                         " (SAGEMAKER_MODEL_SERVER_TIMEOUT)", 504)
        finally:
            with self.counting:
                self.queued -= 1
            self.queue.release()
            if decoder.charged > memory.TRIM_AFTER_BYTES:
                memory.release_memory()
        objects = codecs.prediction_objects(probabilities, config.class_names, batch.ids, k)
        response = Response(codecs.encode(objects, batch.single, accept), mimetype=accept)
        if drift is not None:
            self.note_drift(drift)
            request.environ[DRIFT_KEY] = drift
            response.headers[CUSTOM_ATTRIBUTES] = drift_attributes(drift)
        return response

    def note_drift(self, drift: OnlineState) -> None:
        """Log once when a drift episode starts and once when it ends."""
        with self.counting:
            was, self.drifting = self.drifting, drift.drift
        if drift.drift and not was:
            log.warning("drift detected: MMD² %.4g above the threshold %.4g over the last %d"
                        " images (%d seen)", drift.statistic, drift.threshold, drift.window,
                        drift.seen)
        elif was and not drift.drift:
            log.info("drift episode over: MMD² %.4g, threshold %.4g", drift.statistic,
                     drift.threshold)
