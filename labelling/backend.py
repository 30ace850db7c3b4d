"""Label Studio's ML-backend protocol, served for one model: Label Studio calls us.

- `GET /health`: up, with the model's version.
- `POST /setup` (on connecting the backend to a project): the project's labelling configuration
  must choose among the model's classes; the reply's `model_version` is what Label Studio stores
  with each prediction (and it asks again only for tasks without this version's prediction).
- `POST /predict` `{tasks: [...]}`: one result per task, in order; a task whose image cannot be
  read gets an empty result (and a log line), so one bad image does not fail the others.
- `POST /webhook`: annotation events are counted; past the threshold, or on "Start training"
  (`START_TRAINING`), the training pipeline runs on the project's annotations (labelling/training.py).

Errors are 4xx with `{"error": message}`; the server binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from labelling.config import choice_result, config_classes
from labelling.images import read_image
from labelling.model import LabellingModel
from labelling.training import Trainer
from shared.data.images import ImageDecodeError
from shared.errors import UserError

log = logging.getLogger(__name__)
MAX_BODY = 16 * 1024 * 1024
ANNOTATION_EVENTS = {"ANNOTATION_CREATED": 1, "ANNOTATION_UPDATED": 0, "ANNOTATIONS_CREATED": 1}


class RequestError(UserError):
    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


class Backend:
    def __init__(self, model: LabellingModel, *, document_root: Path | None = None,
                 label_studio: str | None = None, token: str | None = None,
                 trainer: Trainer | None = None) -> None:
        self.model, self.document_root, self.trainer = model, document_root, trainer
        self.label_studio, self.token = label_studio, token  # else learnt from /setup

    def health(self) -> dict[str, Any]:
        return {"status": "UP", "model_class": "ImageClassifier",
                "model_version": self.model.version}

    def setup(self, body: dict[str, Any]) -> dict[str, Any]:
        schema = body.get("schema") or body.get("label_config")
        if schema:
            unknown = [c for c in config_classes(schema) if c not in self.model.classes]
            if unknown:
                raise RequestError(f"the project's choices {unknown} are not classes of the model"
                                   f" {self.model.version} ({', '.join(self.model.classes)}): use"
                                   " the label_config.xml export-tasks wrote")
        self.label_studio = self.label_studio or body.get("hostname") or None
        self.token = self.token or body.get("access_token") or None
        return {"model_version": self.model.version}

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise RequestError("the request has no 'tasks' list")
        images, readable = [], []
        for i, task in enumerate(tasks):
            url = str(((task or {}).get("data") or {}).get("image", ""))
            try:
                images.append(read_image(url, self.document_root, self.label_studio, self.token))
                readable.append(i)
            except UserError as exc:
                log.warning("task %s: %s", (task or {}).get("id"), exc)
        results: list[dict[str, Any]] = [{"result": [], "score": 0.0,
                                          "model_version": self.model.version} for _ in tasks]
        predictions = self._predict_each(images)
        for i, prediction in zip(readable, predictions, strict=True):
            if prediction is not None:
                label, score = prediction
                results[i] = {"result": choice_result(label), "score": score,
                              "model_version": self.model.version}
        return {"results": results}

    def _predict_each(self, images: list[bytes]) -> list[tuple[str, float] | None]:
        try:
            return list(self.model.predict(images)) if images else []
        except ImageDecodeError:  # find the bad ones; the rest are still answered
            out = []
            for data in images:
                try:
                    out.append(self.model.predict([data])[0])
                except ImageDecodeError as exc:
                    log.warning("an image could not be decoded: %s", exc)
                    out.append(None)
            return out

    def webhook(self, body: dict[str, Any]) -> dict[str, Any]:
        action = body.get("action")
        if self.trainer is None:
            return {"status": "ignored", "reason": "this backend does not train"}
        if action in ANNOTATION_EVENTS:
            self.trainer.annotated(ANNOTATION_EVENTS[action])
        elif action != "START_TRAINING":
            return {"status": "ignored", "action": action}
        answer = {"status": "ok", "new_annotations": self.trainer.state["new_annotations"],
                  "threshold": self.trainer.threshold}
        if action == "START_TRAINING" or self.trainer.due():
            if not (self.label_studio and self.token):
                raise RequestError("training needs Label Studio's address and an API token:"
                                   " connect the backend from Label Studio, or start it with"
                                   " --label-studio-url and --api-key")
            project = body.get("project")
            project = project.get("id") if isinstance(project, dict) else project
            if not isinstance(project, int):
                raise RequestError("the event names no project id")
            answer["training"] = self.trainer.start(self.label_studio, self.token, project,
                                                    action)
        return answer


def make_server(backend: Backend, host: str = "127.0.0.1", port: int = 9090) -> ThreadingHTTPServer:
    routes = {("GET", "/health"): lambda _: backend.health(),
              ("GET", "/"): lambda _: backend.health(),
              ("POST", "/setup"): backend.setup, ("POST", "/predict"): backend.predict,
              ("POST", "/webhook"): backend.webhook}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            route = routes.get((method, path))
            try:
                if route is None:
                    known = sorted({p for _, p in routes})
                    raise RequestError(f"no {method} {path}; this backend answers {known}",
                                       HTTPStatus.NOT_FOUND)
                self._answer(HTTPStatus.OK, route(self._body() if method == "POST" else {}))
            except UserError as exc:
                self._answer(getattr(exc, "status", HTTPStatus.BAD_REQUEST), {"error": str(exc)})
            except Exception:
                log.exception("%s %s failed", method, path)
                self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error; see"
                                                                " the backend's log"})

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise RequestError(f"the request is larger than {MAX_BODY} bytes",
                                   HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise RequestError(f"the body is not JSON: {exc}") from None
            if not isinstance(body, dict):
                raise RequestError("the body must be a JSON object")
            return body

        def do_GET(self) -> None:  # noqa: N802 (http.server's names)
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def log_message(self, fmt: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), fmt % args)

    return ThreadingHTTPServer((host, port), Handler)
