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
import math
from dataclasses import dataclass

import numpy as np
from numpy.lib import format as npformat
from PIL import Image

from algorithm.serve.content_types import ACCEPT_TYPES, CONTENT_TYPES, IMAGE_TYPES, JSON, JSONLINES, NPY  # noqa: F401
from shared.data import ImageDecodeError, check_size, fit_square, image_size, load_square_array
from shared.errors import UserError
from shared.models import ModelConfig, top_k


class PayloadError(UserError):
    """The request body cannot be used; the message says why (answered with 400)."""

    status = 400


class PayloadTooLarge(PayloadError):
    """The request asks for more work than one request may (answered with 413)."""

    status = 413


@dataclass(frozen=True)
class Limits:
    """What one request may cost: images, and bytes of pixels decoded or fitted for them."""

    max_images: int
    max_decoded_bytes: int


@dataclass
class Batch:
    images: np.ndarray
    ids: list[str | None]
    single: bool


class Decoder:
    """Decodes one request's images, charging each one's pixels to the request's budget.

    An image costs its source pixels or its fitted pixels, whichever is more (a tiny image scaled
    up costs what it becomes), three bytes each. The charge is taken from the header, before any
    pixel is decoded.
    """

    def __init__(self, config: ModelConfig, limits: Limits) -> None:
        self.config = config
        self.limits = limits
        self.left = limits.max_decoded_bytes
        self.fitted = 3 * config.input_size ** 2

    def decode(self, content_type: str, body: bytes) -> Batch:
        if not body:
            raise PayloadError("the request body is empty")
        if content_type in IMAGE_TYPES:
            return Batch(self.image(body, "image")[None], [None], True)
        if content_type == NPY:
            return self.npy(body)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError(f"{content_type} body is not UTF-8 text") from None
        if content_type == JSONLINES:
            lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
            if not lines:
                raise PayloadError("no records in the jsonlines body")
            self.count(len(lines))
            decoded = [self.b64_image(parse_json(line, f"line {n}: "), f"line {n}")
                       for n, line in lines]
        else:
            payload = parse_json(text, "")
            instances = payload.get("instances") if isinstance(payload, dict) else None
            if not isinstance(instances, list) or not instances:
                raise PayloadError('expected {"instances": [{"b64": "<base64 image>"}, ...]}')
            self.count(len(instances))
            decoded = [self.b64_image(r, f"instance {i}") for i, r in enumerate(instances)]
        return Batch(np.stack([d[0] for d in decoded]), [d[1] for d in decoded], False)

    @property
    def charged(self) -> int:
        """Bytes of pixels charged so far (decoded or fitted)."""
        return self.limits.max_decoded_bytes - self.left

    def count(self, n: int) -> None:
        if n > self.limits.max_images:
            raise PayloadTooLarge(f"the request holds {n} images, more than the"
                                  f" {self.limits.max_images} allowed"
                                  " (SAGEMAKER_MAX_IMAGES_PER_REQUEST)")

    def charge(self, width: int, height: int, images: int = 1) -> None:
        self.left -= images * max(3 * width * height, self.fitted)
        if self.left < 0:
            mb = self.limits.max_decoded_bytes / 2 ** 20
            raise PayloadTooLarge(f"the request's images decode to more than {mb:g} MB of pixels"
                                  " (SAGEMAKER_MAX_DECODED_MB_PER_REQUEST)")

    def image(self, data: bytes, where: str) -> np.ndarray:
        try:
            width, height = image_size(data)
            self.charge(width, height)
            return load_square_array(data, self.config.input_size, self.config.resize_policy)
        except ImageDecodeError as exc:
            raise PayloadError(f"{where}: {exc}") from None

    def b64_image(self, record: object, where: str) -> tuple[np.ndarray, str | None]:
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
        return self.image(data, where), None if image_id is None else str(image_id)

    def npy(self, body: bytes) -> Batch:
        array = read_npy(body)
        single = array.ndim == 3
        if single:
            array = array[None]
        self.count(len(array))
        size = self.config.input_size
        self.charge(array.shape[2], array.shape[1], len(array))  # fitting may add pixels
        if array.shape[1:3] != (size, size):
            try:
                check_size(array.shape[2], array.shape[1])
            except ImageDecodeError as exc:
                raise PayloadError(str(exc)) from None
            array = np.stack([np.asarray(fit_square(Image.fromarray(a), size,
                                                    self.config.resize_policy)) for a in array])
        return Batch(np.ascontiguousarray(array), [None] * len(array), single)


def read_npy(body: bytes) -> np.ndarray:
    """A uint8 N x H x W x 3 (or H x W x 3) array from .npy bytes, its header checked against the
    body before anything is allocated (numpy's own reader allocates what the header declares)."""
    stream = io.BytesIO(body)
    try:
        version = npformat.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = npformat.read_array_header_2_0(stream)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise PayloadError(f"not a valid .npy array (object arrays are refused): {exc}") from None
    if dtype.hasobject:
        raise PayloadError("object arrays are refused (they would unpickle code)")
    if dtype != np.uint8 or len(shape) not in (3, 4) or shape[-1] != 3:
        raise PayloadError(f"expected a uint8 array N x H x W x 3 (or H x W x 3), got"
                           f" {dtype} {shape}")
    if 0 in shape:
        raise PayloadError(f"the array holds no pixels: shape {shape}")
    declared, held = math.prod(shape), len(body) - stream.tell()
    if declared != held:
        raise PayloadError(f"the .npy header declares {declared} bytes of data, the body holds"
                           f" {held}")
    data = np.frombuffer(bytearray(body[stream.tell():]), dtype=np.uint8)
    return data.reshape(shape, order="F" if fortran else "C")


def parse_json(text: str, where: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{where}not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise PayloadError(f"{where}JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise PayloadError(f"{where}unusable JSON ({exc})") from None


def decode(content_type: str, body: bytes, config: ModelConfig, limits: Limits) -> Batch:
    return Decoder(config, limits).decode(content_type, body)


def prediction_objects(probabilities: np.ndarray, classes: list[str], ids: list[str | None],
                       k: int) -> list[dict]:
    objects = []
    # Python floats and ints up front: converting numpy scalars one by one was half this function
    for row, order, image_id in zip(probabilities.tolist(), top_k(probabilities, k).tolist(), ids,
                                    strict=True):
        rounded = [round(p, 6) for p in row]
        best = order[0]
        obj = {
            "label": classes[best],
            "index": best,
            "probabilities": dict(zip(classes, rounded, strict=True)),
            "top_k": [{"label": classes[i], "probability": rounded[i]} for i in order],
        }
        if image_id is not None:
            obj = {"id": image_id, **obj}
        objects.append(obj)
    return objects


def encode(objects: list[dict], single: bool, accept: str) -> bytes:
    if accept == JSONLINES:
        return "".join(json.dumps(o) + "\n" for o in objects).encode()
    return json.dumps(objects[0] if single else objects).encode()
