"""gunicorn's gthread worker, with time limits on every client connection and a way to retire.

gthread waits up to 5 s for a new connection's first byte without tying up a thread, but once bytes
arrive it reads the rest of the request, and writes the answer, with no time limit. A client that
goes silent mid-headers or mid-body then holds a thread for good, and as many such clients as the
worker has threads leave it deaf, /ping included (the tests show it). Here a client silent for
longer than SAGEMAKER_SERVER_READ_TIMEOUT seconds is dropped as if it had hung up, and so is one
whose request has not fully arrived SAGEMAKER_SERVER_REQUEST_DEADLINE seconds after it began,
however steadily it drips.
"""

from __future__ import annotations

import errno
import itertools
import socket
import time
import weakref

from gunicorn.workers.gthread import ThreadWorker


class SilentClient(ConnectionResetError):
    """The client sent (or read) nothing for the whole read timeout; handled as a hang-up."""


class SlowClient(SilentClient):
    """The request was still arriving at its deadline; handled as a hang-up."""


class TimedSocket(socket.socket):
    """A client socket whose blocking mode has a timeout; gunicorn switches modes as it goes."""

    __slots__ = ()  # the layout must stay socket's: live sockets are switched to this class
    timeout_s: float = 60.0
    deadline_s: float = 120.0
    # when the request now arriving on a socket must have arrived (monotonic seconds)
    deadlines: weakref.WeakKeyDictionary[socket.socket, float] = weakref.WeakKeyDictionary()

    def setblocking(self, flag: bool) -> None:
        self.settimeout(self.timeout_s if flag else 0.0)

    def recv(self, size: int, flags: int = 0) -> bytes:
        deadline = self.deadlines.get(self)
        if self.gettimeout() and deadline is not None:  # blocking: wait no later than the deadline
            left = deadline - time.monotonic()
            if left <= 0:
                raise SlowClient(errno.ECONNRESET, f"request still arriving after {self.deadline_s} s")
            super().settimeout(min(self.timeout_s, left))
        try:
            return super().recv(size, flags)
        except TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise SlowClient(errno.ECONNRESET,
                                 f"request still arriving after {self.deadline_s} s") from None
            raise SilentClient(errno.ECONNRESET, f"client silent for {self.timeout_s} s") from None
        finally:
            if self.gettimeout():
                super().settimeout(self.timeout_s)

    def sendall(self, data, flags: int = 0) -> None:
        try:
            super().sendall(data, flags)
        except TimeoutError:
            raise SilentClient(errno.ECONNRESET, f"client read nothing for {self.timeout_s} s") from None


class TimedThreadWorker(ThreadWorker):
    """Every request passes through enqueue_req before a thread reads it: its deadline starts."""

    current: TimedThreadWorker | None = None  # this process's worker, once forked

    def init_process(self) -> None:
        TimedThreadWorker.current = self
        super().init_process()

    def enqueue_req(self, conn) -> None:
        if type(conn.sock) is socket.socket:
            conn.sock.__class__ = TimedSocket
        TimedSocket.deadlines[conn.sock] = time.monotonic() + TimedSocket.deadline_s
        super().enqueue_req(conn)

    def retire(self) -> None:
        """Stop taking requests, finish those in flight, exit; the arbiter starts a fresh worker."""
        self.alive = False


def assign_slot(arbiter, worker) -> None:
    """gunicorn pre_fork hook: give a new worker the lowest slot no live worker holds, so worker i
    keeps GPU i mod n across restarts (gunicorn numbers workers only by age)."""
    taken = {getattr(w, "slot", None) for w in arbiter.WORKERS.values()}
    worker.slot = next(i for i in itertools.count() if i not in taken)
