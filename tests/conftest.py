"""Fixtures: a private SAGEMAKER_BASE_DIR and HOME per test, the digits sample, entrypoint runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sm_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh /opt/ml stand-in; HOME is moved too, so a write to $HOME would be noticed."""
    base = tmp_path / "opt_ml"
    base.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    monkeypatch.setenv("HOME", str(home))
    return base


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from shared.sample_data import write_digits

    out = tmp_path_factory.mktemp("digits") / "images"
    write_digits(out, size=32)
    return out


def run_entrypoint(module: str, *args: str, base: Path, timeout: float = 600,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m module args` as SageMaker would, against the base dir `base`."""
    full_env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONPATH": str(ROOT),
                **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], env=full_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


TRAIN_HYPERPARAMETERS = {"model_name": "resnet10t", "epochs": "4", "batch_size": "32",
                         "learning_rate": "0.002"}


@pytest.fixture(scope="session")
def processed_small(digits_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits processed at 32x32 without augmentation: processing/output/{train,...}."""
    base = tmp_path_factory.mktemp("processed_small")
    (base / "processing" / "input").mkdir(parents=True)
    (base / "processing" / "input" / "data").symlink_to(digits_folder)
    result = run_entrypoint("processing", "train", "--image-size", "32", "--no-hflip",
                            "--augment-copies", "0", base=base)
    assert result.returncode == 0, result.stderr
    return base / "processing" / "output"


def training_job(base: Path, processed: Path, hyperparameters: dict[str, str],
                 channels=("train", "validation", "test")) -> Path:
    """Lay out a training job's /opt/ml with the given channels linked to processed data."""
    for channel in channels:
        (base / "input" / "data").mkdir(parents=True, exist_ok=True)
        (base / "input" / "data" / channel).symlink_to(processed / channel)
    write_json(base / "input" / "config" / "hyperparameters.json", hyperparameters)
    return base


@pytest.fixture(scope="session")
def trained_job(processed_small: Path, tmp_path_factory: pytest.TempPathFactory):
    """A model trained on the digits through the real entrypoint: (base dir, completed process)."""
    base = training_job(tmp_path_factory.mktemp("trained") / "opt_ml", processed_small,
                        TRAIN_HYPERPARAMETERS)
    result = run_entrypoint("algorithm", "train", base=base)
    assert result.returncode == 0, result.stderr[-3000:]
    return base, result
