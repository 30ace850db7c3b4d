"""What one request may cost the server, checked in-process: the codecs' limits, the resize, the
settings that bound the queue and the transform parameters, the GPU slot of each worker."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from werkzeug.datastructures import Headers

from algorithm.serve import codecs
from algorithm.serve.access import custom_top_k
from algorithm.serve.server import device_for
from algorithm.serve.settings import ServerSettings, log_level
from algorithm.serve.worker import assign_slot
from shared.data import ImageDecodeError, decode_images, fit_square, load_rgb
from shared.errors import UserError
from shared.models import ModelConfig, load_artifact
from tests.reliability import write_tiny_model

LIMITS = codecs.Limits(max_images=16, max_decoded_bytes=64 * 2 ** 20)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> ModelConfig:
    return load_artifact(write_tiny_model(tmp_path_factory.mktemp("model") / "model")).config


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def npy_header(shape: tuple, dtype: str = "|u1") -> bytes:
    """A version 1.0 .npy header declaring `shape`, with no data after it."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


def jsonl(records: list[bytes]) -> bytes:
    return b"".join(json.dumps({"b64": base64.b64encode(r).decode()}).encode() + b"\n"
                    for r in records)


def test_crop_never_builds_an_image_larger_than_its_output():
    """A 1x32 strip scaled to 2048 crop used to pass through a 2048 x 65536 image (400 MB)."""
    code = ("import resource, numpy as np; from PIL import Image; from shared.data import fit_square;"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
            "out = fit_square(Image.new('RGB', (1, 32)), 2048);"
            "assert out.size == (2048, 2048);"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)")
    grown_mb = int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                  text=True).stdout)
    assert grown_mb < 100  # the output is 12 MB


@pytest.mark.parametrize("width,height,size", [(64, 48, 32), (33, 70, 32), (1000, 300, 64),
                                               (28, 28, 32)])
def test_crop_samples_as_scaling_then_cutting_did(width, height, size):
    """Models trained before the box resize see the same pixels."""
    rng = np.random.default_rng(width * height)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    scale = size / min(width, height)
    scaled = (max(size, round(width * scale)), max(size, round(height * scale)))
    left, top = (scaled[0] - size) // 2, (scaled[1] - size) // 2
    before = image.resize(scaled, Image.Resampling.BICUBIC, reducing_gap=3.0).crop(
        (left, top, left + size, top + size))
    diff = np.abs(np.asarray(fit_square(image, size), int) - np.asarray(before, int))
    assert diff.max() <= 1


def test_a_strip_is_refused_from_its_header_and_skipped_by_the_jobs(tmp_path):
    with pytest.raises(ImageDecodeError, match="strip"):
        load_rgb(png(1, 33))
    load_rgb(png(1, 32))  # the limit itself is allowed
    (tmp_path / "strip.png").write_bytes(png(2000, 10))
    (tmp_path / "fine.png").write_bytes(png(40, 30))
    decoded = list(decode_images([tmp_path / "strip.png", tmp_path / "fine.png"], 32))
    assert "strip" in decoded[0].error and decoded[1].error is None


def test_npy_header_is_checked_against_the_body_before_anything_is_allocated(config):
    started = time.monotonic()
    for body in (npy_header((100000, 10000, 10000, 3)),  # 30 TB declared in 128 bytes
                 npy_header((2, 8, 8, 3)) + b"\0" * 10,
                 npy_header((2, 8, 8, 3)) + b"\0" * 1000):
        with pytest.raises(codecs.PayloadError, match="declares .* bytes of data, the body holds"):
            codecs.decode(codecs.NPY, body, config, LIMITS)
    for body, message in ((npy_header((2, 8, 8, 3), "<f4"), "expected a uint8"),
                          (npy_header((2, 0, 8, 3)), "no pixels"),
                          (b"\x93NUMPY\x03\x00" + b"\0" * 60, "version 3.0")):
        with pytest.raises(codecs.PayloadError, match=message):
            codecs.decode(codecs.NPY, body, config, LIMITS)
    assert time.monotonic() - started < 5


def test_npy_in_fortran_order_reads_as_numpy_does(config):
    array = np.asfortranarray(np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), np.uint8))
    buffer = io.BytesIO()
    np.save(buffer, array)
    batch = codecs.decode(codecs.NPY, buffer.getvalue(), config, LIMITS)
    assert np.array_equal(batch.images, array)


def test_images_per_request_are_capped_before_any_is_decoded(config):
    with pytest.raises(codecs.PayloadTooLarge, match="17 images.*SAGEMAKER_MAX_IMAGES_PER_REQUEST"):
        codecs.decode(codecs.JSONLINES, jsonl([b"not even an image"] * 17), config, LIMITS)
    body = json.dumps({"instances": [{"b64": "AA=="}] * 17}).encode()
    with pytest.raises(codecs.PayloadTooLarge, match="17 images"):
        codecs.decode(codecs.JSON, body, config, LIMITS)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((17, 1, 1, 3), np.uint8))
    with pytest.raises(codecs.PayloadTooLarge, match="17 images"):
        codecs.decode(codecs.NPY, buffer.getvalue(), config, LIMITS)
    assert len(codecs.decode(codecs.JSONLINES, jsonl([png(8, 8)] * 16), config, LIMITS).ids) == 16


def test_decoded_pixels_per_request_are_charged_from_the_headers(config):
    """Three 4000 x 4000 black PNGs are a few KB of body and 48 MB of pixels each."""
    big = png(4000, 4000, "1")
    assert len(big) < 10_000
    started = time.monotonic()
    with pytest.raises(codecs.PayloadTooLarge, match="SAGEMAKER_MAX_DECODED_MB_PER_REQUEST"):
        codecs.decode(codecs.JSONLINES, jsonl([big] * 3), config, LIMITS)  # 144 MB > 64 MB
    assert len(codecs.decode(codecs.JSONLINES, jsonl([big]), config, LIMITS).ids) == 1
    # tiny images cost what they are fitted to: 16 images of 32 x 32 x 3 = 48 KB
    small = codecs.Limits(max_images=16, max_decoded_bytes=40_000)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((16, 1, 1, 3), np.uint8))
    with pytest.raises(codecs.PayloadTooLarge):
        codecs.decode(codecs.NPY, buffer.getvalue(), config, small)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000,
                                  b'{"instances": [' + b"9" * 10_000 + b"]}",
                                  b'{"instances": [{"b64": ' * 5000])
def test_hostile_json_is_a_payload_error(config, body):
    with pytest.raises(codecs.PayloadError):
        codecs.decode(codecs.JSON, body, config, LIMITS)
    with pytest.raises(codecs.PayloadError):
        codecs.decode(codecs.JSONLINES, body, config, LIMITS)


def test_custom_attributes_set_top_k_and_bad_ones_are_named():
    assert custom_top_k(Headers({"X-Amzn-SageMaker-Custom-Attributes": "trace=abc; top_k=2"}), 5) == 2
    assert custom_top_k(Headers({"X-Amzn-SageMaker-Custom-Attributes": "trace=abc"}), 5) == 5
    assert custom_top_k(Headers(), 5) == 5
    for bad in ("top_k=0", "top_k=x", "top_k=-1", "top_k="):
        with pytest.raises(ValueError, match="top_k"):
            custom_top_k(Headers({"X-Amzn-SageMaker-Custom-Attributes": bad}), 5)


def settings(monkeypatch, **env) -> ServerSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    return ServerSettings.from_environment()


@pytest.mark.parametrize("workers", [1, 2, 16, 17, 64])
@pytest.mark.parametrize("payload", [1, 6, 20, 100, 250])
def test_transform_parameters_stay_within_what_create_transform_job_accepts(monkeypatch, workers,
                                                                            payload):
    params = settings(monkeypatch, SAGEMAKER_MODEL_SERVER_WORKERS=workers,
                      SAGEMAKER_MAX_PAYLOAD_IN_MB=payload).transform_parameters
    assert params["MaxConcurrentTransforms"] * params["MaxPayloadInMB"] <= 100
    assert 1 <= params["MaxConcurrentTransforms"] <= workers
    assert params["MaxPayloadInMB"] == min(payload, 100)


def test_the_queue_must_leave_threads_for_ping(monkeypatch):
    with pytest.raises(UserError, match="SAGEMAKER_SERVER_MAX_QUEUE .* below"):
        settings(monkeypatch, SAGEMAKER_SERVER_MAX_QUEUE=8, SAGEMAKER_SERVER_THREADS_PER_WORKER=8)
    assert settings(monkeypatch, SAGEMAKER_SERVER_MAX_QUEUE=7).max_queue == 7
    monkeypatch.delenv("SAGEMAKER_SERVER_MAX_QUEUE")
    monkeypatch.delenv("SAGEMAKER_SERVER_THREADS_PER_WORKER")
    s = ServerSettings.from_environment()
    assert s.max_queue < s.threads_per_worker


def test_log_level_takes_sagemakers_numbers_and_names():
    assert log_level("20") == 20 and log_level("debug") == 10 and log_level("WARNING") == 30
    with pytest.raises(UserError, match="not a log level"):
        log_level("chatty")


def test_worker_slots_map_to_gpus_and_a_replacement_takes_the_freed_slot():
    assert [device_for(slot, 4) for slot in range(6)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3",
                                                          "cuda:0", "cuda:1"]
    assert device_for(3, 0) == "cpu"
    arbiter = SimpleNamespace(WORKERS={})
    for pid in range(3):
        worker = SimpleNamespace()
        assign_slot(arbiter, worker)
        arbiter.WORKERS[pid] = worker
    assert [w.slot for w in arbiter.WORKERS.values()] == [0, 1, 2]
    del arbiter.WORKERS[1]
    replacement = SimpleNamespace()
    assign_slot(arbiter, replacement)
    assert replacement.slot == 1
