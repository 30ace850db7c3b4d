"""Three ways to score an uploaded image, one answer shape: a model artifact in this process, a
running model server (`POST /invocations`) and a SageMaker endpoint (boto3).

Every failure the person at the app can fix (a corrupt image, a folder that is not a model, a
server that does not answer, no AWS credentials) is a `PredictionError` whose message says so;
the app shows it instead of a traceback.
"""

from __future__ import annotations

import json
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from algorithm.serve.content_types import IMAGE_TYPES, JSON
from shared.errors import UserError

ANY_IMAGE = "application/x-image"  # the server decodes any supported format sent as this
REQUEST_TIMEOUT = 60.0


class PredictionError(UserError):
    """A prediction that cannot be made; the message says why and what to do."""


@dataclass(frozen=True)
class Prediction:
    """One image's answer: every class with its probability, most probable first."""

    name: str
    ranked: list[tuple[str, float]]

    @property
    def label(self) -> str:
        return self.ranked[0][0]

    def top(self, k: int) -> list[tuple[str, float]]:
        return self.ranked[:k]

    @classmethod
    def from_probabilities(cls, name: str, probabilities: dict[str, float]) -> Prediction:
        return cls(name, sorted(((str(c), float(p)) for c, p in probabilities.items()),
                                key=lambda item: -item[1]))


class Predictor(Protocol):
    def predict(self, name: str, data: bytes, content_type: str) -> Prediction: ...


def request_content_type(content_type: str | None) -> str:
    """What the model server is told an upload is: its own type when the server names it, else
    the generic image type (the server finds the format from the bytes)."""
    return content_type if content_type in IMAGE_TYPES else ANY_IMAGE


# --- a model artifact, loaded here ---------------------------------------------------------------

def load_local_model(path: Path):
    """The `ImageClassifier` in a model folder or model.tar.gz, or a PredictionError saying why not."""
    from shared.model_inputs import open_model  # torch: imported when a local model is used

    path = Path(path).expanduser()
    try:
        return open_model(path).eval()
    except UserError as exc:
        raise PredictionError(str(exc)) from None
    except (OSError, ValueError, KeyError, tarfile.TarError) as exc:  # unreadable or mangled files
        raise PredictionError(f"{path} is not a usable model artifact (a folder with model.json and"
                              f" model.safetensors, or a model.tar.gz): {exc}") from None


class LocalPredictor:
    """A loaded classifier; images fitted to its input size with its own resize policy."""

    def __init__(self, classifier) -> None:
        self.classifier = classifier
        self.config = classifier.config

    def square(self, name: str, data: bytes) -> np.ndarray:
        """The upload as the model sees it: size x size x 3 uint8."""
        from shared.model_inputs import decode_for

        try:
            return decode_for(self.config, [data])[0]
        except UserError as exc:
            raise PredictionError(f"{name}: {exc}") from None

    def predict(self, name: str, data: bytes, content_type: str = "") -> Prediction:
        row = self.classifier.probabilities(self.square(name, data)[None])[0]
        return Prediction.from_probabilities(name, dict(zip(self.config.class_names, row,
                                                            strict=True)))


# --- answers in the model server's JSON (the server and SageMaker endpoints) ---------------------

def from_answer(name: str, body: bytes, where: str) -> Prediction:
    """A Prediction from the server's single-image JSON object (`probabilities` per class)."""
    try:
        answer = json.loads(body)
        return Prediction.from_probabilities(name, answer["probabilities"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise PredictionError(f"{where} did not answer with the model server's prediction JSON"
                              f" (an object with 'probabilities'): {body[:200]!r}") from None


def error_text(body: bytes) -> str:
    """The server's `{"error": ...}` message, or the start of whatever it sent."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body[:300].decode("utf-8", "replace")


def invocations_url(url: str) -> str:
    """A server's address, with or without its path, as the URL to POST to."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url if url.endswith("/invocations") else url + "/invocations"


class ServerPredictor:
    """The algorithm image's server (or anything that speaks its protocol) at a URL."""

    def __init__(self, url: str, timeout: float = REQUEST_TIMEOUT) -> None:
        if not url.strip():
            raise PredictionError("give the model server's URL, e.g. http://127.0.0.1:8080")
        self.url = invocations_url(url)
        self.timeout = timeout

    def predict(self, name: str, data: bytes, content_type: str = "") -> Prediction:
        request = urllib.request.Request(
            self.url, data=data, method="POST",
            headers={"Content-Type": request_content_type(content_type), "Accept": JSON})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise PredictionError(f"{name}: the model server at {self.url} refused it (HTTP"
                                  f" {exc.code}): {error_text(exc.read())}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PredictionError(f"cannot reach the model server at {self.url}: {reason}. Is it"
                                  " running, and is the URL right?") from None
        return from_answer(name, body, f"the model server at {self.url}")


class EndpointPredictor:
    """A SageMaker real-time endpoint, through boto3's sagemaker-runtime client."""

    def __init__(self, endpoint: str, region: str | None = None, session: Any = None) -> None:
        import boto3

        if not endpoint.strip():
            raise PredictionError("give the SageMaker endpoint's name")
        session = session or boto3.Session(region_name=region or None)
        if session.get_credentials() is None:
            raise PredictionError("no AWS credentials found (environment, ~/.aws or an instance"
                                  " role): configure them to call a SageMaker endpoint, or use a"
                                  " local model or a model server URL")
        if not session.region_name:
            raise PredictionError("no AWS region: set AWS_DEFAULT_REGION or give the region")
        self.endpoint = endpoint.strip()
        self.client = session.client("sagemaker-runtime")

    def predict(self, name: str, data: bytes, content_type: str = "") -> Prediction:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.endpoint, ContentType=request_content_type(content_type),
                Accept=JSON, Body=data)
            body = response["Body"].read()
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message") or str(exc)
            raise PredictionError(f"{name}: endpoint {self.endpoint} refused it: {message}") from None
        except BotoCoreError as exc:
            raise PredictionError(f"cannot call endpoint {self.endpoint}: {exc}") from None
        return from_answer(name, body, f"endpoint {self.endpoint}")
