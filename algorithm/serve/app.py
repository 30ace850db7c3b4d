"""The WSGI app: SageMaker's serving contract, errors as JSON with the right status code."""

from __future__ import annotations

import json
import logging
import os
from typing import BinaryIO

from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from algorithm.serve import codecs
from algorithm.serve.predictor import Predictor
from algorithm.serve.settings import ServerSettings
from algorithm.serve.worker import SilentClient

log = logging.getLogger(__name__)
# An oversized body up to this many times the limit is read and dropped before the 413 goes out:
# a client that sends its whole body before reading (most do) then gets the 413 instead of a reset,
# and the connection stays usable. Larger bodies are answered at once and the connection closed.
DRAIN_FACTOR = 4


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
    def __init__(self, predictor: Predictor, settings: ServerSettings) -> None:
        self.predictor = predictor
        self.settings = settings
        self.max_bytes = int(settings.max_payload_mb * 1024 * 1024)
        self.default_accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", codecs.JSON)

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = self.max_bytes
        try:
            response = self.route(request)
        except RequestEntityTooLarge:
            discard(environ["wsgi.input"], DRAIN_FACTOR * self.max_bytes)
            response = error(f"the request body is larger than {self.settings.max_payload_mb} MB"
                             " (SAGEMAKER_MAX_PAYLOAD_IN_MB)", 413)
        except ClientDisconnected as exc:  # the client hung up or fell silent: not a server fault
            if isinstance(exc.__context__, SilentClient):
                response = error(f"the request body stopped arriving for {self.settings.read_timeout}"
                                 " s (SAGEMAKER_SERVER_READ_TIMEOUT)", 408)
            else:
                response = error("the client disconnected before the whole body arrived", 400)
        except HTTPException as exc:
            response = error(exc.description or exc.name, exc.code or 400)
        except Exception:  # a real server fault: log it, never leak a traceback
            log.exception("error while handling %s %s", request.method, request.path)
            response = error("internal server error", 500)
        return response(environ, start_response)

    def route(self, request: Request) -> Response:
        routes = {"/ping": ("GET", self.ping), "/invocations": ("POST", self.invocations),
                  "/execution-parameters": ("GET", self.execution_parameters)}
        if request.path not in routes:
            return error(f"no such path {request.path}; use /ping, /invocations,"
                         " /execution-parameters", 404)
        method, handler = routes[request.path]
        if request.method != method and not (method == "GET" and request.method == "HEAD"):
            return error(f"{request.path} takes {method}", 405)
        return handler(request)

    def ping(self, request: Request) -> Response:
        if self.predictor.ready:
            return json_response({"status": "healthy"})
        if self.predictor.error:
            return json_response({"status": "failed", "error": self.predictor.error}, 503)
        return json_response({"status": "loading"}, 503)

    def execution_parameters(self, request: Request) -> Response:
        return json_response({
            "MaxConcurrentTransforms": self.settings.workers,
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": int(self.settings.max_payload_mb),
        })

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
        if not self.predictor.wait_if_loading(self.settings.timeout):
            return error(self.predictor.error or "the model is still loading", 503)
        config = self.predictor.config
        body = request.get_data(cache=False)
        try:
            batch = codecs.decode(content_type, body, config)
        except codecs.PayloadError as exc:
            return error(str(exc), 400)
        probabilities = self.predictor.predict(batch.images)
        objects = codecs.prediction_objects(probabilities, config.class_names, batch.ids,
                                            self.settings.top_k)
        return Response(codecs.encode(objects, batch.single, accept), mimetype=accept)
