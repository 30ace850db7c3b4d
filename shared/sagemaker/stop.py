"""Graceful stop: SageMaker sends SIGTERM, then SIGKILL 120 s later (spot reclaim, StopTrainingJob).

Jobs poll `GracefulStop.requested` between units of work and save what they have.
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


class GracefulStop:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous = None

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self) -> None:
        self._event.set()

    def install(self) -> GracefulStop:
        """Handle SIGTERM by setting the flag (main thread only, as Python requires)."""
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_sigterm(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        log.warning("SIGTERM received: finishing the current step, then stopping")
        self._event.set()

    def __enter__(self) -> GracefulStop:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()
