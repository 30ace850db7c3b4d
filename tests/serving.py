"""Starting and stopping the real model server in tests (127.0.0.1 only, stopped by its test)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 30):
    """(status, parsed JSON or raw text, response headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read().decode()
        try:
            payload = json.loads(raw)
        except json.JSONDecodeError:
            payload = raw
        return response.status, payload, dict(response.getheaders())
    finally:
        conn.close()


@contextmanager
def running_server(base: Path, workers: int = 1, env: dict[str, str] | None = None,
                   wait_ready: bool = True):
    port = free_port()
    full_env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONPATH": str(ROOT),
                "SAGEMAKER_BIND_TO_PORT": str(port),
                "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "algorithm", "serve", "--host", "127.0.0.1"],
                            env=full_env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"server exited: {proc.stderr.read()[-3000:]}"
            try:
                status, _, _ = request(port, "GET", "/ping", timeout=2)
                if status == 200 or (not wait_ready and status == 503):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not come up in 90 s"
            time.sleep(0.2)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
