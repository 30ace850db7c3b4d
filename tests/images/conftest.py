"""Container tests (`make test-images`): the built images run by podman as SageMaker runs them.

`make test-images` sets podman up (images/podman/setup.sh) and builds every image first; run on
their own, these tests fail with that instruction rather than skip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = "podman"
PREFIX = "sagemaker-image-mlops"
COMPONENTS = ("processing", "algorithm", "monitoring", "explainability")


def revision() -> str:
    return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()


def podman(*args: str, timeout: float = 900, check: bool = True,
           **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([ENGINE, *args], capture_output=True, text=True, timeout=timeout,
                            **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:4])} failed ({result.returncode}): "
                             f"{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def image_tag() -> str:
    return revision()


@pytest.fixture(scope="session")
def images(image_tag: str) -> dict[str, str]:
    """component -> the locally built image of this commit."""
    tag = image_tag
    refs = {c: f"{PREFIX}-{c}:{tag}" for c in COMPONENTS}
    for ref in refs.values():
        if subprocess.run([ENGINE, "image", "exists", ref]).returncode != 0:
            pytest.fail(f"image {ref} is not built; run `make test-images`", pytrace=False)
    return refs
