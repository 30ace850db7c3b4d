"""The model server against strangers' requests that cost little to send and much to answer.

Every hostile request must be answered (200 or a 4xx with a reason, never a 5xx) within a few
seconds, with bounded memory; a client dripping its request is cut off at the request deadline;
a worker whose queue is full answers 503 with Retry-After while /ping stays under SageMaker's 2 s;
a forward pass stuck past SAGEMAKER_MODEL_SERVER_TIMEOUT gets its client a 504 and the worker
replaced; workers keep their GPU slot across replacement. Synchronised on what the server
reports (its answers and log lines), never on sleeps.
"""

from __future__ import annotations

import base64
import io
import json
import queue
import re
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psutil
import pytest
from PIL import Image

from tests.reliability import write_tiny_model
from tests.serving import request, running_server

ANSWER_LIMIT_S = 10.0  # "within a few seconds", with room for a saturated machine
# A worker's memory over four rounds of every hostile request: it may grow by up to the
# decoded-pixel budget (256 MB by default) and a 64 MP image (192 MB) in all (README figure), and
# the last two rounds (a leak of 100 KB per request would show) by no more than the second figure.
RSS_GROWTH_LIMIT_MB, RSS_STEADY_LIMIT_MB = 256 + 192, 40
ROUNDS = 4
PING_LIMIT_S = 2.0
# A request the model needs many seconds for on any CPU: 4096 tiny images fitted to 224 x 224 for
# resnet18 (~7.4 TFLOP; 616 MB of fitted pixels, so the deadline test raises that budget), sent as
# a 12 KB body. The queue test sends requests of a sixty-fourth of that (seconds each).
HEAVY_ARCH, HEAVY_SIZE, HEAVY_IMAGES = "resnet18", 224, 4096


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def jsonl(records: list[bytes]) -> bytes:
    return b"".join(json.dumps({"b64": base64.b64encode(r).decode()}).encode() + b"\n"
                    for r in records)


def lying_npy_header() -> bytes:
    header = repr({"descr": "|u1", "fortran_order": False, "shape": (100000, 10000, 10000, 3)})
    header = header.encode() + b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


HOSTILE = [  # name, content type, body, extra headers, expected status
    ("strip png", "image/png", png(1, 20000), {}, 400),
    ("5000 1x1 images in x-npy", "application/x-npy", npy(np.zeros((5000, 1, 1, 3), np.uint8)),
     {}, 413),
    ("5000 tiny png records", "application/jsonlines", jsonl([png(1, 1)] * 5000), {}, 413),
    ("256 1x1 images in x-npy (the test's cap)", "application/x-npy",
     npy(np.zeros((256, 1, 1, 3), np.uint8)), {}, 200),
    ("two 8000x8000 black pngs", "application/jsonlines", jsonl([png(8000, 8000, "1")] * 2),
     {}, 413),
    ("npy header declaring 30 TB", "application/x-npy", lying_npy_header(), {}, 400),
    ("deeply nested json", "application/json", b"[" * 200_000 + b"]" * 200_000, {}, 400),
    ("json integer of 10,000 digits", "application/json", b'{"instances": [' + b"9" * 10_000
     + b"]}", {}, 400),
    ("top_k from CustomAttributes", "image/png", png(32, 32),
     {"X-Amzn-SageMaker-Custom-Attributes": "top_k=2"}, 200),
    ("bad top_k", "image/png", png(32, 32), {"X-Amzn-SageMaker-Custom-Attributes": "top_k=x"},
     400),
]


def worker_rss_mb(proc) -> float:
    return sum(c.memory_info().rss for c in psutil.Process(proc.pid).children()) / 2 ** 20


def test_hostile_requests_get_200_or_a_4xx_quickly_and_the_access_log_escapes_them(tmp_path):
    write_tiny_model(tmp_path / "opt_ml" / "model", size=32)
    access = tmp_path / "access.log"
    env = {"SAGEMAKER_MAX_IMAGES_PER_REQUEST": "256"}  # the default, 4096, is a full shard's work
    with access.open("w") as stdout, running_server(tmp_path / "opt_ml", env=env,
                                                    stdout=stdout) as (proc, port):
        request(port, "POST", "/invocations", png(32, 32), {"Content-Type": "image/png"})
        rss = [worker_rss_mb(proc)]
        answers = {}
        for _ in range(ROUNDS):
            for name, content_type, body, headers, expected in HOSTILE:
                started = time.monotonic()
                status, payload, _ = request(port, "POST", "/invocations", body,
                                             {"Content-Type": content_type, **headers})
                answers[name] = (status, round(time.monotonic() - started, 2))
                assert status == expected, (name, status, payload)
                if status != 200:
                    assert payload["error"] and "Traceback" not in payload["error"], name
            rss.append(worker_rss_mb(proc))
        status, body, _ = request(port, "POST", "/invocations", png(32, 32),
                                  {"Content-Type": "image/png",
                                   "X-Amzn-SageMaker-Custom-Attributes": "top_k=2"})
        assert len(body["top_k"]) == 2
        assert request(port, "GET", "/ping%0a%7B%22forged%22%3A1%7D")[0] == 404
        print("hostile answers (status, s):", json.dumps(answers),
              "worker RSS MB before and after each round:", [round(r) for r in rss])
        assert all(seconds < ANSWER_LIMIT_S for _, seconds in answers.values()), answers
        assert max(rss) - rss[0] < RSS_GROWTH_LIMIT_MB and rss[-1] - rss[-3] < RSS_STEADY_LIMIT_MB
    lines = access.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one whole JSON record
    assert len(records) == ROUNDS * len(HOSTILE) + 3 + sum(1 for r in records if r["path"] == "/ping")
    forged = [r for r in records if r["path"].startswith("/ping\n")]
    assert len(forged) == 1 and forged[0]["status"] == 404 and forged[0]["Route"] == "other"
    metrics = records[-3]["_aws"]["CloudWatchMetrics"][0]
    assert {m["Name"] for m in metrics["Metrics"]} >= {"Latency", "Images", "4XXError",
                                                        "5XXError", "QueueDepth"}
    # (the runner's /ping gets 503 while the model loads: only requests count here)
    assert sum(r["5XXError"] for r in records if r["path"] != "/ping") == 0
    assert [r["Images"] for r in records if r["status"] == 200 and r["path"] == "/invocations"
            ][:2] == [1, 256]


def test_a_dripping_client_is_cut_off_at_the_request_deadline(tmp_path):
    write_tiny_model(tmp_path / "opt_ml" / "model", size=32)
    env = {"SAGEMAKER_SERVER_REQUEST_DEADLINE": "3", "SAGEMAKER_SERVER_READ_TIMEOUT": "2"}
    with running_server(tmp_path / "opt_ml", env=env) as (_, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        started, answer = time.monotonic(), b""
        for _ in range(1000):  # a byte every 0.3 s, never silent for the 2 s read timeout
            try:
                sock.sendall(b"\0")
            except OSError:
                break
            if select.select([sock], [], [], 0.3)[0]:  # the server answered or hung up
                try:
                    answer = sock.recv(4096)
                except OSError:
                    pass
                break
        cut_after = time.monotonic() - started
        sock.close()
        print(f"dripping client cut off after {cut_after:.1f} s: {answer[:40]!r}")
        assert cut_after < 100 * 0.3  # long before its 1000 bytes (300 s) were in
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
        assert request(port, "GET", "/ping")[0] == 200


class LogWatcher:
    """Collects a server's stderr lines on a thread; waits for a line matching a pattern."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=lambda: [self.lines.put(line) for line in stream], daemon=True
                         ).start()

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout
        for line in self.seen:
            if match := re.search(pattern, line):
                self.seen.remove(line)
                return match
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if match := re.search(pattern, line):
                return match
            self.seen.append(line)


SLOT_LINE = r"worker pid (\d+), slot (\d+), serves on (\S+)"


def test_workers_hold_slots_and_a_replaced_worker_takes_over_its_slot(tmp_path):
    write_tiny_model(tmp_path / "opt_ml" / "model", size=32)
    with running_server(tmp_path / "opt_ml", workers=2) as (proc, port):
        log = LogWatcher(proc.stderr)
        slots = {}
        for _ in range(2):
            pid, slot, device = log.wait_for(SLOT_LINE).groups()
            slots[int(slot)] = int(pid)
            assert device == "cpu"
        assert sorted(slots) == [0, 1]
        psutil.Process(slots[1]).send_signal(signal.SIGKILL)
        pid, slot, _ = log.wait_for(SLOT_LINE).groups()
        assert int(slot) == 1 and int(pid) not in slots.values()
        # the replacement loads its model after that line (/ping is 503 on it until then)
        deadline = time.monotonic() + 120
        while request(port, "GET", "/ping")[0] != 200:
            assert proc.poll() is None and time.monotonic() < deadline, "no healthy worker"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def heavy_model(tmp_path_factory):
    import torch

    from shared.models import ImageClassifier, save_artifact

    torch.manual_seed(0)
    base = tmp_path_factory.mktemp("heavy") / "opt_ml"
    classifier = ImageClassifier.create(HEAVY_ARCH, [str(c) for c in range(10)], HEAVY_SIZE)
    save_artifact(classifier.eval(), base / "model")
    return base


HEAVY_BODY = npy(np.zeros((HEAVY_IMAGES, 1, 1, 3), np.uint8))


@contextmanager
def heavy_requests(port: int, count: int, images: int) -> Iterator[list]:
    """`count` heavy requests in flight on their own threads; their (status, headers) at the end."""
    results: list = []
    body = npy(np.zeros((images, 1, 1, 3), np.uint8))

    def send():
        status, _, headers = request(port, "POST", "/invocations", body,
                                     {"Content-Type": "application/x-npy"}, timeout=600)
        results.append((status, headers))

    threads = [threading.Thread(target=send) for _ in range(count)]
    for t in threads:
        t.start()
    yield results
    for t in threads:
        t.join()


def test_a_full_queue_answers_503_with_retry_after_and_ping_stays_fast(heavy_model):
    """The default worker count and threads, a queue of one: each worker's place is taken by a
    heavy request, and more wait on its threads."""
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": "",  # the default count: one per CPU here
           "SAGEMAKER_SERVER_MAX_QUEUE": "1"}
    with running_server(heavy_model, env=env) as (proc, port):
        workers = len(psutil.Process(proc.pid).children())
        log = LogWatcher(proc.stderr)
        for _ in range(workers):  # /ping answered 200 from one worker: wait for every one
            log.wait_for("model loaded")
        pings, refused = [], None
        with heavy_requests(port, 2 * workers, HEAVY_IMAGES // 64) as heavy:
            while refused is None and len(heavy) < 2 * workers:
                started = time.monotonic()
                assert request(port, "GET", "/ping", timeout=30)[0] == 200
                pings.append(time.monotonic() - started)
                status, body, headers = request(port, "POST", "/invocations", npy(
                    np.zeros((1, 1, 1, 3), np.uint8)), {"Content-Type": "application/x-npy"})
                if status == 503:
                    refused = (body, headers)
            for _ in range(10):  # /ping while the queues are full
                started = time.monotonic()
                assert request(port, "GET", "/ping", timeout=30)[0] == 200
                pings.append(time.monotonic() - started)
        print(f"{workers} workers; ping max {max(pings):.3f} s over {len(pings)};"
              f" heavy answers {sorted(s for s, _ in heavy)}")
        assert refused is not None, "no request was refused while every queue was full"
        assert "SAGEMAKER_SERVER_MAX_QUEUE" in refused[0]["error"]
        assert refused[1]["Retry-After"] == "1"
        assert max(pings) < PING_LIMIT_S
        assert all(status in (200, 503) for status, _ in heavy)
        assert request(port, "POST", "/invocations", npy(np.zeros((1, 1, 1, 3), np.uint8)),
                       {"Content-Type": "application/x-npy"})[0] == 200  # recovered


def test_a_forward_pass_past_the_deadline_gets_504_and_the_worker_is_replaced(heavy_model):
    env = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "2", "SAGEMAKER_MAX_DECODED_MB_PER_REQUEST": "1024"}
    with running_server(heavy_model, env=env) as (proc, port):
        log = LogWatcher(proc.stderr)
        first = int(log.wait_for(SLOT_LINE).group(1))
        started = time.monotonic()
        status, body, _ = request(port, "POST", "/invocations", HEAVY_BODY,
                                  {"Content-Type": "application/x-npy"}, timeout=600)
        waited = time.monotonic() - started
        assert status == 504 and "SAGEMAKER_MODEL_SERVER_TIMEOUT" in body["error"]
        log.wait_for("retiring this worker")
        second = int(log.wait_for(SLOT_LINE).group(1))
        assert second != first
        deadline = time.monotonic() + 120
        while request(port, "GET", "/ping", timeout=30)[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        print(f"504 after {waited:.1f} s; worker {first} replaced by {second}")
        assert waited < 2 + ANSWER_LIMIT_S
