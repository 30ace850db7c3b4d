"""Request payloads in, prediction objects out, for every content type the server accepts.

Every decoder returns uint8 N x S x S x 3 images (fitted to the model's input size with the model's
own resize policy, as its training images were), their ids (None when the payload has none) and
whether the request held one image or a batch.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass

import numpy as np
from PIL import Image

from shared.data import ImageDecodeError, fit_square, load_square_array
from shared.errors import UserError
from shared.models import ModelConfig, top_k

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
NPY = "application/x-npy"
JSONLINES = "application/jsonlines"
JSON = "application/json"
CONTENT_TYPES = (*IMAGE_TYPES, NPY, JSONLINES, JSON)
ACCEPT_TYPES = (JSON, JSONLINES)


class PayloadError(UserError):
    """The request body cannot be used; the message says why (answered with 400)."""


@dataclass
class Batch:
    images: np.ndarray
    ids: list[str | None]
    single: bool


def _image(data: bytes, config: ModelConfig, where: str) -> np.ndarray:
    try:
        return load_square_array(data, config.input_size, config.resize_policy)
    except ImageDecodeError as exc:
        raise PayloadError(f"{where}: {exc}") from None


def _b64_image(record: object, config: ModelConfig, where: str) -> tuple[np.ndarray, str | None]:
    if not isinstance(record, dict):
        raise PayloadError(f"{where}: expected an object with a base64 image under 'b64'")
    encoded = record.get("b64", record.get("image"))
    if not isinstance(encoded, str):
        raise PayloadError(f"{where}: missing 'b64' (a base64-encoded image)")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError(f"{where}: 'b64' is not valid base64") from None
    image_id = record.get("id")
    return _image(data, config, where), None if image_id is None else str(image_id)


def _npy(body: bytes, config: ModelConfig) -> Batch:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise PayloadError(f"not a valid .npy array (object arrays are refused): {exc}") from None
    single = array.ndim == 3
    if single:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise PayloadError(f"expected a uint8 array N x H x W x 3 (or H x W x 3), got"
                           f" {array.dtype} {array.shape}")
    if array.shape[0] == 0 or 0 in array.shape[1:3]:
        raise PayloadError(f"the array holds no pixels: shape {array.shape}")
    size = config.input_size
    if array.shape[1:3] != (size, size):
        array = np.stack([np.asarray(fit_square(Image.fromarray(a), size, config.resize_policy))
                          for a in array])
    return Batch(np.ascontiguousarray(array), [None] * len(array), single)


def decode(content_type: str, body: bytes, config: ModelConfig) -> Batch:
    if not body:
        raise PayloadError("the request body is empty")
    if content_type in IMAGE_TYPES:
        return Batch(_image(body, config, "image")[None], [None], True)
    if content_type == NPY:
        return _npy(body, config)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(f"{content_type} body is not UTF-8 text") from None
    if content_type == JSONLINES:
        images, ids = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PayloadError(f"line {number}: not valid JSON ({exc.msg})") from None
            image, image_id = _b64_image(record, config, f"line {number}")
            images.append(image)
            ids.append(image_id)
        if not images:
            raise PayloadError("no records in the jsonlines body")
        return Batch(np.stack(images), ids, False)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"not valid JSON ({exc.msg})") from None
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not instances:
        raise PayloadError('expected {"instances": [{"b64": "<base64 image>"}, ...]}')
    decoded = [_b64_image(r, config, f"instance {i}") for i, r in enumerate(instances)]
    return Batch(np.stack([d[0] for d in decoded]), [d[1] for d in decoded], False)


def prediction_objects(probabilities: np.ndarray, classes: list[str], ids: list[str | None],
                       k: int) -> list[dict]:
    objects = []
    for row, order, image_id in zip(probabilities, top_k(probabilities, k), ids, strict=True):
        best = int(order[0])
        obj = {
            "label": classes[best],
            "index": best,
            "probabilities": {name: round(float(p), 6) for name, p in zip(classes, row, strict=True)},
            "top_k": [{"label": classes[i], "probability": round(float(row[i]), 6)} for i in order],
        }
        if image_id is not None:
            obj = {"id": image_id, **obj}
        objects.append(obj)
    return objects


def encode(objects: list[dict], single: bool, accept: str) -> bytes:
    if accept == JSONLINES:
        return "".join(json.dumps(o) + "\n" for o in objects).encode()
    return json.dumps(objects[0] if single else objects).encode()
