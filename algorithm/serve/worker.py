"""gunicorn's gthread worker, with a time limit on every read and write of a client connection.

gthread waits up to 5 s for a new connection's first byte without tying up a thread, but once bytes
arrive it reads the rest of the request, and writes the answer, with no time limit. A client that
goes silent mid-headers or mid-body then holds a thread for good, and as many such clients as the
worker has threads leave it deaf, /ping included (the tests show it). Here a client silent for
longer than SAGEMAKER_SERVER_READ_TIMEOUT seconds is dropped as if it had hung up.
"""

from __future__ import annotations

import errno
import socket

from gunicorn.workers.gthread import ThreadWorker


class SilentClient(ConnectionResetError):
    """The client sent (or read) nothing for the whole read timeout; handled as a hang-up."""


class TimedSocket(socket.socket):
    """A client socket whose blocking mode has a timeout; gunicorn switches modes as it goes."""

    __slots__ = ()
    timeout_s: float = 60.0

    def setblocking(self, flag: bool) -> None:
        self.settimeout(self.timeout_s if flag else 0.0)

    def recv(self, size: int, flags: int = 0) -> bytes:
        try:
            return super().recv(size, flags)
        except TimeoutError:
            raise SilentClient(errno.ECONNRESET, f"client silent for {self.timeout_s} s") from None

    def sendall(self, data, flags: int = 0) -> None:
        try:
            super().sendall(data, flags)
        except TimeoutError:
            raise SilentClient(errno.ECONNRESET, f"client read nothing for {self.timeout_s} s") from None


class TimedThreadWorker(ThreadWorker):
    """Every connection passes through enqueue_req before a thread reads from it."""

    def enqueue_req(self, conn) -> None:
        if type(conn.sock) is socket.socket:
            conn.sock.__class__ = TimedSocket
        super().enqueue_req(conn)
