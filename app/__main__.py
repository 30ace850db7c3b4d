"""`python -m app [--port N] [--address HOST] [--registry PATH] [--runs PATH]`: the Streamlit app.

It becomes `streamlit run app/streamlit_app.py` (the process is replaced, so whoever started it
stops the server with one signal to the same pid), headless, without usage statistics, and bound to
127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.settings import DEFAULT_REGISTRY, DEFAULT_RUNS, REGISTRY_VARIABLE, RUNS_VARIABLE

SCRIPT = Path(__file__).resolve().parent / "streamlit_app.py"
ROOT = SCRIPT.parent.parent


def streamlit_command(port: int, address: str) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(SCRIPT),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.address", address, "--server.port", str(port),
            "--server.fileWatcherType", "none",  # nobody edits the app while it serves
            "--client.toolbarMode", "viewer"]  # no developer menu or deploy button


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY,
                        help="the local model registry (default: registry)")
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS,
                        help="the folder holding pipeline run folders (default: runs)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be between 1 and 65535, not {args.port}")
    env = {**os.environ, REGISTRY_VARIABLE: str(args.registry.resolve()),
           RUNS_VARIABLE: str(args.runs.resolve()),
           # the script imports the suite's packages whatever the working directory
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = streamlit_command(args.port, args.address)
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    main()
