"""A real Label Studio server (from its own virtual environment, LABEL_STUDIO_VENV, made by
`make test-labelling`) on 127.0.0.1 with a throw-away data folder, and the ML backend as its
command-line users start it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.serving import free_port, wait_until

HERE = Path(__file__).resolve().parent
TOKEN = "0123456789abcdef0123456789abcdef01234567"  # Label Studio wants 40 characters


def label_studio_venv() -> Path:
    venv = Path(os.environ.get("LABEL_STUDIO_VENV", "build/label-studio-venv")).resolve()
    assert (venv / "bin" / "label-studio").is_file(), (
        f"no Label Studio in {venv}: run `make test-labelling`, which installs it")
    return venv


class LabelStudio:
    def __init__(self, url: str, venv: Path) -> None:
        self.url, self.venv = url, venv

    def sdk(self, command: str, **arguments) -> dict:
        """One call of Label Studio's own client (tests/labelling/ls_sdk.py)."""
        done = subprocess.run(
            [str(self.venv / "bin" / "python"), str(HERE / "ls_sdk.py"), command,
             json.dumps({"base_url": self.url, "token": TOKEN, **arguments})],
            capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read()).get("status") == "UP"
    except (OSError, ValueError):
        return False


def start_label_studio(data_dir: Path, document_root: Path) -> tuple[LabelStudio, subprocess.Popen]:
    venv = label_studio_venv()
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
           "LATEST_VERSION_CHECK": "false",  # else start-up asks PyPI
           "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false",  # a backend on 127.*
           "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root)}
    log = data_dir / "label-studio.log"
    process = subprocess.Popen(
        [str(venv / "bin" / "label-studio"), "start", "--no-browser", "--internal-host",
         "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir), "--username",
         "tester@example.com", "--password", "not-a-secret-1", "--user-token", TOKEN,
         "--enable-legacy-api-token"], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{url}/health"), "Label Studio start-up", process, log, 300)
    return LabelStudio(url, venv), process


def start_backend(args: list[str], log: Path) -> tuple[str, subprocess.Popen]:
    """`python -m labelling backend ARGS --port 0`; its address from the line it logs when up."""
    process = subprocess.Popen([sys.executable, "-m", "labelling", "backend", *args, "--port", "0"],
                               stdout=open(log, "w"), stderr=subprocess.STDOUT)
    found: list[str] = []

    def up() -> bool:
        for line in log.read_text().splitlines():
            if "ML backend for" in line:
                found.append(line.rsplit(" on ", 1)[1].strip())
                return True
        return False

    wait_until(up, "the ML backend's start-up", process, log, 300)
    return found[0], process
