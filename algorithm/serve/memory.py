"""How a server worker's memory stays bounded by what is in use, on glibc.

glibc gives threads their own malloc arenas and keeps freed memory in them. A worker has a thread
per connection it serves (20 by default), an inference thread and gunicorn's own: left alone, its
memory grows with every thread that ever handled a large request, and in steps for a long while as
new threads come into use, which looks like a leak. So each worker limits itself to a few arenas,
and gives memory back after a request that decoded many pixels. Both are no-ops elsewhere.
"""

from __future__ import annotations

import ctypes

M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h
ARENAS = 2
TRIM_AFTER_BYTES = 32 * 2 ** 20  # pixels a request decoded before its memory is given back


def _glibc():
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_libc = _glibc()


def limit_arenas() -> None:
    """Call in the worker before its threads start: they share ARENAS arenas."""
    if _libc is not None:
        _libc.mallopt(M_ARENA_MAX, ARENAS)


def release_memory() -> None:
    """Give freed memory in every arena back to the system."""
    if _libc is not None:
        _libc.malloc_trim(0)
