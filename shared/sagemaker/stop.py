"""Graceful stop: SageMaker sends SIGTERM, then SIGKILL 120 s later (spot reclaim, StopTrainingJob).

Every job ends on SIGTERM with a reason and exit code 143 (`SigtermInterrupts`, installed by
`run_job`); jobs that can stop more gracefully poll `GracefulStop.requested` between units of work.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

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


class SigtermInterrupts:
    """SIGTERM raises an exception in the main thread at once, unless deferred.

    `run_job` installs it for a job's whole run. Without it Python dies on SIGTERM with no reason
    written for SageMaker and no cleanup, and as PID 1 in a container (the exec-form entrypoint)
    it ignores SIGTERM altogether until the SIGKILL. Code that stops at a safe point by itself
    (Lightning's fit loop) runs inside `deferred()`, where a SIGTERM is only recorded.
    """

    def __init__(self, make_error: Callable[[], BaseException]) -> None:
        self.make_error = make_error
        self.received = False
        self.deferring = False
        self._pid = os.getpid()
        self._previous = None

    def __call__(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        if os.getpid() != self._pid:  # a forked worker process: end the way it always did
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = True
        if not self.deferring:
            raise self.make_error()

    def install(self) -> SigtermInterrupts:
        self._previous = signal.signal(signal.SIGTERM, self)
        return self

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Only record SIGTERM inside; raise on the way out if one came and nothing else did."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.received:
            raise self.make_error()


def sigterm_deferred():
    """`SigtermInterrupts.deferred()` of the installed handler; a no-op outside `run_job`."""
    handler = signal.getsignal(signal.SIGTERM)
    return handler.deferred() if isinstance(handler, SigtermInterrupts) else nullcontext()


def sigterm_received() -> bool:
    handler = signal.getsignal(signal.SIGTERM)
    return isinstance(handler, SigtermInterrupts) and handler.received
