"""The model server through `python -m algorithm serve`, on a model trained in the tests."""

import base64
import io
import json
import random
import shutil
import signal
import threading
import time

import numpy as np
import psutil
import pytest
from PIL import Image

from algorithm.serve.predictor import Predictor
from shared.data import ProcessedDataset
from tests.serving import request, running_server


@pytest.fixture(scope="module")
def model_base(trained_job, tmp_path_factory):
    base = tmp_path_factory.mktemp("serve") / "opt_ml"
    shutil.copytree(trained_job[0] / "model", base / "model")
    return base


@pytest.fixture(scope="module")
def server(model_base):
    with running_server(model_base) as (proc, port):
        yield port


@pytest.fixture(scope="module")
def test_data(trained_job):
    return ProcessedDataset(trained_job[0] / "input" / "data" / "test")


def png_bytes(array, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_ping_is_503_until_the_model_is_loaded_then_200(model_base, tmp_path):
    base = tmp_path / "opt_ml"
    (base / "model").mkdir(parents=True)
    with running_server(base, wait_ready=False) as (_, port):
        status, body, _ = request(port, "GET", "/ping")
        assert (status, body["status"]) == (503, "loading")
        status, body, _ = request(port, "POST", "/invocations", png_bytes(
            np.zeros((8, 8, 3), np.uint8)), {"Content-Type": "image/png"})
        assert status == 503 and "loading" in body["error"]
        for name in ("model.safetensors", "model.json"):
            shutil.copy(model_base / "model" / name, base / "model" / name)
        deadline = time.monotonic() + 30
        while request(port, "GET", "/ping")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def ping_status(port) -> str:
    return request(port, "GET", "/ping")[1]["status"]


def test_a_server_started_while_the_model_is_written_waits_for_the_whole_model(model_base,
                                                                              tmp_path):
    """A model folder fills file by file (a temporary, the weights, model.json last): none of
    those states is a broken model, and the server loads the model once it is whole."""
    base = tmp_path / "opt_ml"
    model = base / "model"
    model.mkdir(parents=True)
    weights = (model_base / "model" / "model.safetensors").read_bytes()
    (model / ".model.safetensors.0a1b.tmp").write_bytes(weights[: len(weights) // 2])
    with running_server(base, wait_ready=False) as (_, port):
        for state in ("temporary only", "weights without model.json"):
            if state == "weights without model.json":
                (model / ".model.safetensors.0a1b.tmp").unlink()
                (model / "model.safetensors").write_bytes(weights)
            # the loader looks at the folder every 0.5 s: give it several looks at this state
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                assert ping_status(port) == "loading", state
                time.sleep(0.1)
        shutil.copy(model_base / "model" / "model.json", model / "model.json")
        deadline = time.monotonic() + 60
        while ping_status(port) != "healthy":
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_a_broken_model_keeps_ping_at_503_and_only_the_log_says_why(tmp_path):
    base = tmp_path / "opt_ml"
    (base / "model").mkdir(parents=True)
    (base / "model" / "model.pth").write_bytes(b"\x80\x04pickle")
    with running_server(base, wait_ready=False) as (proc, port):
        deadline = time.monotonic() + 30
        while (body := request(port, "GET", "/ping")[1])["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        status, answer, _ = request(port, "POST", "/invocations", b"x",
                                    {"Content-Type": "image/png"})
    assert body["status"] == "failed" and "log" in body["error"]
    assert status == 503 and answer["error"] == body["error"]
    assert str(base) not in json.dumps([body, answer])  # no file paths for strangers
    assert "pickled weights are refused" in proc.stderr.read()


def test_execution_parameters(server):
    status, body, _ = request(server, "GET", "/execution-parameters")
    assert status == 200
    assert body == {"MaxConcurrentTransforms": 1, "BatchStrategy": "MultiRecord",
                    "MaxPayloadInMB": 6}


@pytest.mark.parametrize("content_type,fmt", [("image/png", "PNG"), ("image/jpeg", "JPEG"),
                                              ("application/x-image", "PNG")])
def test_single_image_gives_one_prediction_object(server, test_data, content_type, fmt):
    image, label, _ = test_data[0]
    status, body, headers = request(server, "POST", "/invocations", png_bytes(image, fmt),
                                    {"Content-Type": content_type})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert set(body) == {"label", "index", "probabilities", "top_k"}
    assert body["label"] == test_data.classes[label] == test_data.classes[body["index"]]
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-3
    assert body["top_k"][0]["label"] == body["label"] and len(body["top_k"]) == 5


def test_npy_shard_predictions_equal_the_in_process_model(server, model_base, test_data):
    shard = next(test_data.shard_files())
    array = np.load(shard)
    status, body, _ = request(server, "POST", "/invocations", shard.read_bytes(),
                              {"Content-Type": "application/x-npy"})
    assert status == 200 and len(body) == len(array)
    expected = Predictor(model_base / "model").load_now().predict(array)
    classes = test_data.classes
    served = np.array([[obj["probabilities"][c] for c in classes] for obj in body])
    assert np.allclose(served, expected, atol=1e-5)
    assert [obj["index"] for obj in body] == list(expected.argmax(1))
    accuracy = np.mean(expected.argmax(1) == test_data.labels[: len(array)])
    assert accuracy >= 0.95


def test_npy_batch_answered_as_jsonlines_and_resized(server):
    array = np.random.default_rng(0).integers(0, 256, (3, 50, 70, 3), dtype=np.uint8)
    status, body, headers = request(server, "POST", "/invocations", npy_bytes(array),
                                    {"Content-Type": "application/x-npy",
                                     "Accept": "application/jsonlines"})
    assert status == 200 and headers["Content-Type"] == "application/jsonlines"
    lines = body.strip().split("\n")
    assert len(lines) == 3 and all("label" in json.loads(line) for line in lines)


def test_jsonlines_output_lines_match_input_lines(server, test_data):
    records = [{"id": f"img-{i}", "b64": base64.b64encode(png_bytes(test_data.image(i))).decode()}
               for i in range(7)]
    body = "".join(json.dumps(r) + "\n" for r in records).encode()
    status, text, _ = request(server, "POST", "/invocations", body,
                              {"Content-Type": "application/jsonlines",
                               "Accept": "application/jsonlines"})
    assert status == 200
    out = [json.loads(line) for line in text.strip().split("\n")]
    assert [o["id"] for o in out] == [r["id"] for r in records]


def test_json_instances_give_a_list_in_input_order(server, test_data):
    instances = [{"b64": base64.b64encode(png_bytes(test_data.image(i))).decode()}
                 for i in range(4)]
    status, body, _ = request(server, "POST", "/invocations",
                              json.dumps({"instances": instances}).encode(),
                              {"Content-Type": "application/json"})
    assert status == 200 and isinstance(body, list) and len(body) == 4
    assert [o["index"] for o in body] == list(test_data.labels[:4])


@pytest.mark.parametrize("content_type,payload,accept,expected", [
    ("text/csv", b"1,2,3", "application/json", 415),
    ("image/png", b"\x89PNG", "text/csv", 406),
    ("image/png", b"not an image", "application/json", 400),
    ("image/png", b"", "application/json", 400),
    ("application/json", b"{broken", "application/json", 400),
    ("application/json", b'{"instances": [{"b64": "!!!"}]}', "application/json", 400),
    ("application/jsonlines", b'{"id": 1}\n', "application/json", 400),
    ("application/x-npy", b"garbage", "application/json", 400),
])
def test_bad_requests_get_a_json_4xx_with_a_message(server, content_type, payload, accept,
                                                    expected):
    status, body, _ = request(server, "POST", "/invocations", payload,
                              {"Content-Type": content_type, "Accept": accept})
    assert status == expected and isinstance(body, dict) and body["error"]
    assert "Traceback" not in body["error"]


def test_npy_of_the_wrong_dtype_or_a_pickled_object_array_is_refused(server):
    for array, message in ((np.zeros((2, 8, 8, 3), np.float32), "expected a uint8"),
                           (np.zeros((2, 8, 8), np.uint8), "expected a uint8")):
        status, body, _ = request(server, "POST", "/invocations", npy_bytes(array),
                                  {"Content-Type": "application/x-npy"})
        assert status == 400 and message in body["error"]
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    status, body, _ = request(server, "POST", "/invocations", buffer.getvalue(),
                              {"Content-Type": "application/x-npy"})
    assert status == 400 and "object arrays are refused" in body["error"]


def test_unknown_path_and_wrong_method(server):
    assert request(server, "GET", "/predict")[0] == 404
    assert request(server, "GET", "/invocations")[0] == 405


def test_oversized_body_is_413(model_base):
    with running_server(model_base, env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"}) as (_, port):
        status, body, _ = request(port, "POST", "/invocations", b"\0" * 1_500_000,
                                  {"Content-Type": "application/x-npy"})
        assert status == 413 and "1.0 MB" in body["error"]
        assert request(port, "GET", "/ping")[0] == 200


def decompression_bomb() -> bytes:
    """A 20000 x 20000 PNG of a few KB: 400 M pixels declared in its header."""
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, "PNG")
    return buffer.getvalue()


def malformed_payloads(rng, good_png, bomb):
    truncated = good_png[: rng.integers(1, len(good_png) // 2)]  # cut inside the pixel data
    yield "image/png", rng.bytes(int(rng.integers(1, 2000)))
    yield "image/jpeg", truncated
    yield "application/x-image", bomb
    leading = [int(x) for x in rng.integers(0, 5, int(rng.integers(0, 5)))]
    channels = int(rng.choice([0, 1, 2, 4]))  # never 3: no random shape is a valid image batch
    yield "application/x-npy", npy_bytes(np.zeros((*leading, channels), np.uint8))
    yield "application/jsonlines", rng.bytes(300)
    yield "application/json", json.dumps({"instances": [{"b64": base64.b64encode(
        truncated).decode()}]}).encode()


def test_500_malformed_requests_per_content_type_never_give_a_5xx(server, test_data):
    import http.client

    rng = np.random.default_rng(1)
    good_png = png_bytes(test_data.image(0))
    bomb = decompression_bomb()
    statuses: dict[str, list[int]] = {}
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    for _ in range(500):
        for content_type, payload in malformed_payloads(rng, good_png, bomb):
            conn.request("POST", "/invocations", body=payload,
                         headers={"Content-Type": content_type})
            response = conn.getresponse()
            response.read()
            statuses.setdefault(content_type, []).append(response.status)
    conn.close()
    for content_type, codes in statuses.items():
        assert all(400 <= c < 500 for c in codes), (content_type, sorted(set(codes)))
    assert sum(len(c) for c in statuses.values()) == 3000
    assert request(server, "GET", "/ping")[0] == 200


def test_eight_concurrent_clients_get_no_errors(model_base, test_data):
    payloads = [png_bytes(test_data.image(i)) for i in range(16)]
    failures = []

    def client(seed):
        rnd = random.Random(seed)
        for _ in range(25):
            status, body, _ = request(port, "POST", "/invocations", rnd.choice(payloads),
                                      {"Content-Type": "image/png"})
            if status != 200 or "label" not in body:
                failures.append(status)

    with running_server(model_base, workers=2) as (_, port):
        threads = [threading.Thread(target=client, args=(s,)) for s in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert failures == [] and not any(t.is_alive() for t in threads)


def test_sigterm_stops_the_server_promptly_and_leaves_no_process(model_base):
    with running_server(model_base, workers=2) as (proc, port):
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 2
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.wait(timeout=30)
        assert time.monotonic() - started < 30 and proc.returncode == 0
        gone, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []
