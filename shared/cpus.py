"""How many CPUs this process may use: the container's share, not the host's count."""

import os


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))
