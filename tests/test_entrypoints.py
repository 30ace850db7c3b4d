"""Every component's entrypoint: its modes, documented flags, and bad flags refused before any
heavy import (the flags are checked against their declarations in `shared.schema` alone)."""

import importlib
import json
import os
import subprocess
import sys

import pytest

from shared import schema
from tests.conftest import ROOT, run_entrypoint

COMPONENTS = ("processing", "algorithm", "monitoring", "explainability")
HEAVY = ("torch", "numpy", "cv2", "albumentations", "PIL", "captum", "alibi_detect", "timm")
# One bad value per component, to a flag every mode of it has.
BAD_FLAGS = {
    "processing": ["train", "--image-size", "5"],
    "monitoring": ["train", "--p-value", "1.5"],
    "explainability": ["train", "--method", "simpson"],
    "algorithm": ["serve", "--bogus"],
}
FAILURE_FILE = {"processing": "output/message", "monitoring": "output/message",
                "explainability": "output/message", "algorithm": None}


def modes(component):
    return importlib.import_module(f"{component}.__main__").MODES


@pytest.mark.parametrize("component", COMPONENTS)
def test_help_documents_every_flag_with_its_type_and_default(component):
    for name, mode in modes(component).items():
        result = subprocess.run([sys.executable, "-m", component, name, "--help"], cwd=ROOT,
                                capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
        assert result.returncode == 0, result.stderr
        for field, tp in schema.fields_of(mode.config):
            flag = "--" + field.name.replace("_", "-")
            assert flag in result.stdout, (component, name, flag)
            assert f"({schema.type_name(tp)}" in result.stdout


def test_algorithm_train_help_lists_every_hyperparameter():
    from algorithm.hyperparameters import Hyperparameters

    result = subprocess.run([sys.executable, "-m", "algorithm", "train", "--help"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0
    for field, _ in schema.fields_of(Hyperparameters):
        assert f"  {field.name}: " in result.stdout


PROBE = """
import json, sys
from {component}.__main__ import MODES
from shared.sagemaker.entrypoint import main
try:
    code = main("{component}", MODES, "", {argv!r})
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_bad_flag_fails_with_a_reason_before_any_heavy_import(component, sm_base):
    probe = PROBE.format(component=component, argv=BAD_FLAGS[component], heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "SAGEMAKER_BASE_DIR": str(sm_base)})
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"code": 2, "heavy": []}, result.stderr
    flag = BAD_FLAGS[component][1]
    assert flag in result.stderr
    if FAILURE_FILE[component]:
        reason = (sm_base / FAILURE_FILE[component]).read_text()
        assert reason.startswith("bad arguments: ") and flag in reason


def test_a_value_breaking_a_rule_names_the_flag_value_and_what_is_accepted(sm_base):
    result = run_entrypoint("processing", "train", "--image-size", "5", base=sm_base)
    assert result.returncode == 2
    assert ("--image-size='5' is out of range; expected an integer between 8 and 4096"
            in (sm_base / "output" / "message").read_text())
    result = run_entrypoint("processing", "train", "--validation-fraction", "0.6",
                            "--test-fraction", "0.5", base=sm_base)
    assert result.returncode == 2
    assert "must sum below 1" in (sm_base / "output" / "message").read_text()
