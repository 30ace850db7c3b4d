"""The image tooling that needs no container engine: registry.py against fake `aws`/`docker`
command lines (the ECR path cannot be reached from here), the lock selection and hadolint."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
REGISTRY_TOOL = ROOT / "images" / "registry.py"
ECR_REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"

# Each fake appends its argv (and stdin, for login) to $CALLS and answers like the real tool.
FAKE_AWS = """#!/usr/bin/env bash
echo "aws $*" >> "$CALLS"
case "$*" in
  "sts get-caller-identity"*)
    [ -n "$FAKE_NO_CREDENTIALS" ] && { echo "Unable to locate credentials" >&2; exit 255; }
    echo 123456789012 ;;
  "ecr get-login-password"*) echo -n "ecr-password" ;;
  *"describe-repositories"*"sagemaker-image-mlops-algorithm"*)
    echo "RepositoryNotFoundException" >&2; exit 254 ;;
  *) ;;
esac
"""
FAKE_DOCKER = """#!/usr/bin/env bash
if [ "$1" = login ]; then echo "docker $* stdin=$(cat)" >> "$CALLS"; exit 0; fi
echo "docker $*" >> "$CALLS"
case "$1 $2" in
  "image inspect")
    ref="${@: -1}"
    case "$*" in
      *"{{.Id}}"*) [[ "$ref" == *monitoring* ]] && { echo "Error: no such image $ref" >&2; exit 1; }
                    echo sha256:0123 ;;
      *RepoDigests*) echo "[\\"${ref%:*}@sha256:feed${#ref}\\"]" ;;
    esac ;;
esac
"""


@pytest.fixture
def fake_tools(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("aws", FAKE_AWS), ("docker", FAKE_DOCKER)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls),
           "AWS_REGION": "eu-west-1"}
    env.pop("AWS_ACCOUNT_ID", None)

    def run(*args, extra_env=None):
        result = subprocess.run([sys.executable, str(REGISTRY_TOOL), "--engine", "docker",
                                 "--tag", "abc123", "--record", str(tmp_path / "pushed.json"),
                                 *args], env={**env, **(extra_env or {})},
                                capture_output=True, text=True)
        log = calls.read_text().splitlines() if calls.exists() else []
        return result, log
    return run


def test_push_to_ecr_logs_in_creates_missing_repositories_and_records_digests(fake_tools, tmp_path):
    result, calls = fake_tools("push", "processing", "algorithm")
    assert result.returncode == 0, result.stderr
    assert f"docker login --username AWS --password-stdin {ECR_REGISTRY} stdin=ecr-password" in calls
    created = [c for c in calls if "create-repository" in c]
    assert len(created) == 1 and "sagemaker-image-mlops-algorithm" in created[0]
    assert "scanOnPush=true" in created[0]
    for component in ("processing", "algorithm"):
        remote = f"{ECR_REGISTRY}/sagemaker-image-mlops-{component}"
        assert f"docker tag sagemaker-image-mlops-{component}:abc123 {remote}:abc123" in calls
        assert f"docker push {remote}:abc123" in calls
        assert f"docker push {remote}:latest" in calls
    # login happens before the first push
    assert calls.index(next(c for c in calls if c.startswith("docker login"))) < \
        calls.index(next(c for c in calls if c.startswith("docker push")))
    record = json.loads((tmp_path / "pushed.json").read_text())
    key = f"{ECR_REGISTRY}/sagemaker-image-mlops-processing:abc123"
    assert record[key].startswith(f"{ECR_REGISTRY}/sagemaker-image-mlops-processing@sha256:feed")


def test_image_uris_are_by_digest_once_pushed_and_by_tag_otherwise(fake_tools, tmp_path):
    assert fake_tools("push", "processing")[0].returncode == 0
    out = tmp_path / "uris.json"
    result, _ = fake_tools("uris", "--out", str(out), "processing", "algorithm")
    assert result.returncode == 0, result.stderr
    uris = json.loads(out.read_text())
    assert "@sha256:" in uris["processing"]
    assert uris["algorithm"] == f"{ECR_REGISTRY}/sagemaker-image-mlops-algorithm:abc123"


def test_push_of_an_image_never_built_fails_naming_it_before_pushing_anything(fake_tools):
    result, calls = fake_tools("push", "processing", "monitoring")
    assert result.returncode == 1
    assert "sagemaker-image-mlops-monitoring:abc123" in result.stderr
    assert not [c for c in calls if c.startswith(("docker push", "docker login"))]


def test_push_without_registry_or_aws_credentials_says_what_to_set(fake_tools):
    result, _ = fake_tools("push", "processing", extra_env={"FAKE_NO_CREDENTIALS": "1"})
    assert result.returncode == 1
    assert "Unable to locate credentials" in result.stderr


def test_a_non_ecr_registry_is_pushed_without_aws(fake_tools):
    result, calls = fake_tools("--registry", "127.0.0.1:5000", "push", "processing")
    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c.startswith("aws")]
    assert "docker push 127.0.0.1:5000/sagemaker-image-mlops-processing:abc123" in calls


def test_lock_selection_for_an_image_is_its_group_plus_base_only():
    select = [sys.executable, str(ROOT / "images" / "lock.py"), "select"]
    base = set(subprocess.run(select, capture_output=True, text=True, check=True).stdout.splitlines())
    processing = set(subprocess.run([*select, "processing"], capture_output=True, text=True,
                                    check=True).stdout.splitlines())
    names = {line.split("==")[0] for line in processing - base}
    assert "albumentations" in names
    assert not names & {"pytorch-lightning", "captum", "alibi-detect", "pytest", "pip-audit"}
    assert any(line.startswith("torch==") for line in base)
    assert all(re.search(r" --hash=sha256:[0-9a-f]{64}", line) for line in processing)


def test_lock_selection_of_the_aws_group_alone_has_the_sdk_and_no_torch():
    """The export's environment (CodeBuild's post_build) installs the SageMaker SDK, not torch; the
    images never get the SDK."""
    select = [sys.executable, str(ROOT / "images" / "lock.py"), "select"]
    alone = subprocess.run([*select, "--only", "aws"], capture_output=True, text=True,
                           check=True).stdout
    names = {line.split("==")[0] for line in alone.splitlines()}
    assert {"sagemaker", "boto3", "pyyaml"} <= names
    assert not names & {"torch", "timm", "pytest"}
    for image in ("processing", "algorithm", "monitoring", "explainability"):
        pins = subprocess.run([*select, image], capture_output=True, text=True, check=True).stdout
        assert "sagemaker==" not in pins


HASHED_PIN = re.compile(r"[a-z0-9][a-z0-9-]*==\S+( --hash=sha256:[0-9a-f]{64})+  # groups: [a-z,]+")


def test_every_pin_is_locked_with_the_hashes_of_its_files_and_installed_requiring_them():
    """A file that differs from the one locked (a compromised mirror, a re-uploaded release) is
    refused by pip wherever the lock is installed: the local environment and every image."""
    pins = [line for line in (ROOT / "requirements.lock").read_text().splitlines()
            if not line.startswith("#")]
    assert len(pins) > 100 and all(HASHED_PIN.fullmatch(line) for line in pins), [
        line for line in pins if not HASHED_PIN.fullmatch(line)][:3]
    venv_install = [line for line in (ROOT / "Makefile").read_text().splitlines()
                    if "-r requirements.lock" in line]
    assert venv_install and all("--require-hashes" in line for line in venv_install)
    for dockerfile in (ROOT / "images").glob("*/Dockerfile"):
        installs = [line for line in dockerfile.read_text().splitlines() if "pip install" in line]
        assert installs and all("--require-hashes" in line for line in installs), dockerfile


def test_the_default_base_image_is_pinned_by_digest_and_is_the_buildspecs():
    dockerfile = (ROOT / "images" / "base" / "Dockerfile").read_text()
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)[1]
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", default)
    spec = yaml.safe_load((ROOT / "buildspec.yml").read_text())
    assert spec["env"]["variables"]["PYTHON_IMAGE"] == default


def test_dockerfiles_pass_hadolint():
    dockerfiles = sorted(str(p) for p in (ROOT / "images").glob("*/Dockerfile"))
    assert len(dockerfiles) == 5
    result = subprocess.run([str(Path(sys.executable).parent / "hadolint"), *dockerfiles],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buildspec_only_calls_make_and_pins_the_base_image_by_digest():
    spec = yaml.safe_load((ROOT / "buildspec.yml").read_text())
    assert spec["version"] == 0.2
    assert "@sha256:" in spec["env"]["variables"]["PYTHON_IMAGE"]
    assert spec["phases"]["build"]["commands"] == ["make build push image-uris"]
    assert spec["phases"]["post_build"]["commands"] == ["make export-pipelines"]
    assert spec["artifacts"]["files"] == ["image-uris.json", "training-pipeline.json",
                                          "batch-inference-pipeline.json"]


@pytest.mark.parametrize("remote,published", [
    ("https://me:ghp_secret@github.com/org/repo.git", "https://github.com/org/repo.git"),
    ("https://ghp_secret@github.com:8443/org/repo.git?token=x#y", "https://github.com:8443/org/repo.git"),
    ("git@github.com:org/repo.git", "ssh://github.com/org/repo.git"),
    ("ssh://deploy:pw@host/org/repo.git", "ssh://host/org/repo.git"),
    ("", "unknown"),
])
def test_image_labels_carry_the_source_url_without_credentials(tmp_path, remote, published):
    """make build stamps the git remote on every image; a token in it would be published."""
    for name in ("Makefile", "pyproject.toml", "images/labels.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((ROOT / name).read_text())
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    if remote:
        subprocess.run(["git", "remote", "add", "origin", remote], cwd=tmp_path, check=True)
    result = subprocess.run(["make", "-n", "build-processing", "ENGINE=echo",
                             f"PYTHON={sys.executable}"], cwd=tmp_path, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert f"org.opencontainers.image.source={published} " in result.stdout
    assert "secret" not in result.stdout and "pw@" not in result.stdout
