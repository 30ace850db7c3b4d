"""Running the model server as a child process and talking to it, as SageMaker's front end does.

Used by the Batch Transform step of the runner and by the tests; always on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60):
    """(status, parsed JSON or text, response headers) for one request on a new connection."""
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
                   wait_ready: bool = True, command: list[str] | None = None,
                   startup_timeout: float = 120,
                   port: int | None = None, stdout=subprocess.DEVNULL,
                   popen: Callable[..., subprocess.Popen] = subprocess.Popen,
                   ) -> Iterator[tuple[subprocess.Popen, int]]:
    """Start `algorithm serve` (or `command`) for the model under `base`; SIGTERM it on exit.

    Waits until /ping answers 200 (or, with wait_ready=False, until the server answers at all).
    `port` is where it answers on 127.0.0.1 (default: a free one); `stdout` takes its access log;
    `popen` starts it (the local engine's warm start, pipelines.warm.popen, has the same calls).
    """
    port = port or free_port()
    full_env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONPATH": str(ROOT),
                "SAGEMAKER_BIND_TO_PORT": str(port),
                "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), **(env or {})}
    command = command or [sys.executable, "-m", "algorithm", "serve", "--host", "127.0.0.1"]
    proc = popen(command, env=full_env, cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the model server exited: {proc.stderr.read()[-2000:]}")
            try:
                status, body, _ = request(port, "GET", "/ping", timeout=2)
                if status == 200 or (not wait_ready and status == 503):
                    break
                if isinstance(body, dict) and body.get("status") == "failed":
                    proc.terminate()  # its log holds the reason (/ping does not tell strangers)
                    reasons = [line for line in proc.communicate(timeout=30)[1].splitlines()
                               if "could not be loaded" in line]
                    raise RuntimeError("the model server cannot serve: "
                                       + (reasons[-1] if reasons else body.get("error", "")))
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the model server did not become healthy in {startup_timeout} s")
            time.sleep(0.2)
        yield proc, port
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM (a server's clean stop), then SIGKILL if it is still there after `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
