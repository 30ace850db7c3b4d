"""The source URL stamped on every image (`org.opencontainers.image.source`), never with credentials.

A git remote can carry a token (`https://user:ghp_...@github.com/org/repo.git`), and whatever goes
into an image label is published with every push. Only scheme, host, port and path are kept;
an scp-style remote (`git@host:org/repo.git`) becomes `ssh://host/org/repo.git`.
Usage: `python images/labels.py URL` prints the URL to use ("unknown" for none).
"""

from __future__ import annotations

import re
import sys
from urllib.parse import urlsplit, urlunsplit

SCP_LIKE = re.compile(r"(?:[^@/:]+@)?(?P<host>[^@/:]+):(?P<path>[^/].*)")


def public_url(url: str) -> str:
    url = url.strip()
    if not url:
        return "unknown"
    parts = urlsplit(url)
    if parts.scheme and parts.netloc:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))  # query or fragment: tokens too
    scp = SCP_LIKE.fullmatch(url)
    if scp and "://" not in url:
        return f"ssh://{scp['host']}/{scp['path']}"
    return url.rsplit("@", 1)[-1]  # a local path; anything before an @ is dropped regardless


if __name__ == "__main__":
    print(public_url(sys.argv[1] if len(sys.argv) > 1 else ""))
