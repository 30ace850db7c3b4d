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
        if os.getpid() != self._pid:  # a forked child before its at-fork reset ran
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = True
        if not self.deferring:
            raise self.make_error()

    def install(self) -> SigtermInterrupts:
        global _installed
        self._previous = signal.signal(signal.SIGTERM, self)
        _installed = self
        return self

    def uninstall(self) -> None:
        global _installed
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
        if _installed is self:
            _installed = None

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Only record SIGTERM inside; raise on the way out if one came and nothing else did.

        Nested blocks defer until the outermost one ends."""
        outer = self.deferring
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = outer
        if self.received and not outer:
            raise self.make_error()


# run_job's handler. Looked up here, not as the current handler: inside fit, Lightning's handler
# wraps it, and a SIGTERM that came while fit set up the data (before Lightning's handler existed)
# is known to this one alone.
_installed: SigtermInterrupts | None = None

# A forked worker (a decoding pool's, say) must die of SIGTERM at once, as it did before the
# handler: it gets the default back. SIGTERM is held across the fork itself, since Python drops a
# signal that reaches a child before its after-fork step; a held one is delivered just after.
_held_across_fork = False


def _hold_sigterm() -> None:
    global _held_across_fork
    _held_across_fork = _installed is not None
    if _held_across_fork:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _release_sigterm(child: bool) -> None:
    global _installed
    if not _held_across_fork:
        return
    try:
        if child:
            _installed = None  # the worker is no job of run_job's
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:  # not seen as the main thread: the handler falls back to the default itself
        pass
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


os.register_at_fork(before=_hold_sigterm, after_in_parent=lambda: _release_sigterm(False),
                    after_in_child=lambda: _release_sigterm(True))


def sigterm_deferred():
    """`SigtermInterrupts.deferred()` of the installed handler; a no-op outside `run_job`."""
    return _installed.deferred() if _installed is not None else nullcontext()


def sigterm_received() -> bool:
    return _installed is not None and _installed.received
