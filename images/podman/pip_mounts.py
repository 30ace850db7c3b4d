"""Write the flags that let `podman build` install from this host's local package sources.

pip on these machines is configured (files and PIP_* variables) with local wheel folders and
file:// indexes and a CA bundle. The build gets the same settings as one `/etc/pip.conf`, and each
local folder (and the bundle) mounted read-only at the same path; none of it is committed into a
layer.

Usage: python3 pip_mounts.py STATE_DIR  -> STATE_DIR/pip.conf and STATE_DIR/build-flags
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

KEYS = ("index-url", "extra-index-url", "find-links", "trusted-host", "default-timeout", "cert")


def pip_settings() -> dict[str, str]:
    """`pip config list` as {key: value}; variables (:env:) win over files, as in pip."""
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], check=True,
                             capture_output=True, text=True).stdout
    files: dict[str, str] = {}
    env: dict[str, str] = {}
    for line in listing.splitlines():
        scope_key, _, value = line.partition("=")
        scope, _, key = scope_key.rpartition(".")
        if key in KEYS:
            (env if scope == ":env:" else files)[key] = value.strip("'\"")
    return {**files, **env}


def local_folders(settings: dict[str, str]) -> list[Path]:
    folders = set()
    for key in ("index-url", "extra-index-url", "find-links"):
        for entry in settings.get(key, "").split():
            path = Path(urlparse(entry).path) if entry.startswith("file://") else Path(entry)
            if entry.startswith("file://") and path.name == "simple":
                path = path.parent  # the index's packages may sit beside its simple/ pages
            if path.is_absolute() and path.is_dir():
                folders.add(path)
    return sorted(folders)


def main() -> None:
    state = Path(sys.argv[1]).resolve()
    state.mkdir(parents=True, exist_ok=True)
    settings = pip_settings()
    conf = state / "pip.conf"
    conf.write_text("[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    flags = ["--network", "host", "--volume", f"{conf}:/etc/pip.conf:ro"]
    for folder in local_folders(settings):
        flags += ["--volume", f"{folder}:{folder}:ro"]
    # The venv's own pip trusts only its bundled CAs; hand it the host's (which may add a proxy's).
    cert = Path(settings.get("cert", ""))
    if cert.is_absolute() and cert.is_file():
        flags += ["--volume", f"{cert.resolve()}:{cert}:ro"]
    (state / "build-flags").write_text(" ".join(flags) + "\n")


if __name__ == "__main__":
    main()
