"""The tests start the real server through the same helper the pipeline runner uses, and wait for
the servers they start on what those report."""

import subprocess
import time
from pathlib import Path

import pytest

from pipelines.server import free_port, request, running_server, stop_process

__all__ = ["free_port", "request", "running_server", "stop_process", "wait_until"]


def wait_until(check, what: str, process: subprocess.Popen, log: Path, timeout: float):
    """Poll `check` until it is true; fail at once if `process` exits, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while not check():
        if process.poll() is not None:
            pytest.fail(f"{what}: the process exited ({process.returncode}):\n"
                        f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)

