"""The four images run by podman exactly as SageMaker runs them, on the digits sample."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from pipelines.definition import load_pipeline
from pipelines.jobs import Engine
from pipelines.runner import Runner
from pipelines.server import free_port, request
from shared.data import ProcessedDataset
from shared.sample_data import write_digits
from tests.images.conftest import COMPONENTS, ENGINE, ROOT, podman

PIPELINES = ROOT / "pipelines"


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits") / "images"
    write_digits(out, size=32)
    return out


@pytest.fixture(scope="module")
def training_run(images, digits, tmp_path_factory):
    """processing train -> algorithm train -> monitoring train -> explainability train."""
    root = tmp_path_factory.mktemp("training")
    params = {"input_data": str(digits), "epochs": "3", "accuracy_threshold": "0.8",
              "explain_images": "12", "registry": str(root / "registry")}
    result = Runner(load_pipeline(PIPELINES / "training.yaml"), params, root / "run",
                    Engine(ENGINE, images), echo=False).run()
    assert result.ok, result.summary()
    return result


def test_training_pipeline_runs_every_image_in_train_mode(training_run):
    model = training_run.outputs("train")["model"]
    assert {"model.safetensors", "model.json", "evaluation.json"} <= {p.name for p in model.iterdir()}
    evaluation = json.loads((model / "evaluation.json").read_text())
    assert evaluation["multiclass_classification_metrics"]["accuracy"]["value"] >= 0.8
    detector = training_run.outputs("drift_reference")["detector"]
    assert any(detector.iterdir())
    explanations = training_run.outputs("explain")["explanations"]
    assert (explanations / "summary.json").is_file() and (explanations / "attributions.npz").is_file()
    version = training_run.outputs("register")["version_dir"]
    assert (version / "model" / "model.safetensors").is_file()


TWO_INSTANCES = """
name: two_instances
parameters: {images: {}}
steps:
  - name: process_sharded
    job: processing
    component: processing
    mode: train
    instances: 2
    sharded: [data]
    inputs: {data: "${params.images}"}
    args: [--image-size, "32", --no-hflip, --classes, "0,1,2,3,4,5,6,7,8,9"]
    outputs: [train, validation, test]
  - name: process
    job: processing
    component: processing
    mode: train
    instances: 2
    inputs: {data: "${params.images}"}
    args: [--image-size, "32", --no-hflip]
    outputs: [train, validation, test]
  - name: train
    job: training
    component: algorithm
    instances: 2
    inputs:
      train: "${steps.process.outputs.train}"
      validation: "${steps.process.outputs.validation}"
      test: "${steps.process.outputs.test}"
    hyperparameters: {model_name: resnet10t, epochs: 3, batch_size: 32, learning_rate: 0.002,
                      accuracy_threshold: 0.8}
"""


def test_two_instance_processing_and_ddp_training_in_separate_containers(images, digits,
                                                                        training_run, tmp_path):
    """Each host its own container with its own /opt/ml and resource config, as SageMaker runs
    them: the digits sharded by key between two processing hosts, and replicated to two others;
    every image processed exactly once either way. Then two training containers on a private
    network train one model over DDP (gloo on eth0): as accurate as one container's."""
    definition = tmp_path / "two.yaml"
    definition.write_text(TWO_INSTANCES)
    result = Runner(load_pipeline(definition), {"images": str(digits)}, tmp_path / "run",
                    Engine(ENGINE, images), echo=False).run()
    assert result.ok, result.summary()
    everything = sorted(p.relative_to(digits).as_posix() for p in digits.rglob("*.png"))
    for step in ("process_sharded", "process"):
        outputs = result.outputs(step)
        seen = Counter(r.source for split in ("train", "validation", "test")
                       for r in ProcessedDataset(outputs[split]).records if "#aug" not in r.id)
        assert sorted(seen) == everything and set(seen.values()) == {1}, step
    logs = [(tmp_path / "run" / "train" / f"log-algo-{i}.txt").read_text() for i in (1, 2)]
    assert all("reads" in log and "(replicated)" in log for log in logs)
    two = json.loads((result.outputs("train")["model"] / "evaluation.json").read_text())
    one = json.loads((training_run.outputs("train")["model"] / "evaluation.json").read_text())
    accuracy = [r["multiclass_classification_metrics"]["accuracy"]["value"] for r in (two, one)]
    print(f"test accuracy: two instances {accuracy[0]:.4f}, one instance {accuracy[1]:.4f}")
    assert accuracy[0] >= 0.8 and abs(accuracy[0] - accuracy[1]) <= 0.1


def test_batch_pipeline_runs_every_image_in_serve_mode(images, training_run, digits, tmp_path):
    version = training_run.outputs("register")["version_dir"]
    params = {"input_data": str(digits), "model": str(version / "model"),
              "detector": str(version / "detector"), "explain_images": "8", "drift_window": "500"}
    result = Runner(load_pipeline(PIPELINES / "batch_inference.yaml"), params, tmp_path / "run",
                    Engine(ENGINE, images), echo=False).run()
    assert result.ok, result.summary()
    predictions = sorted(result.outputs("transform")["predictions"].glob("*.out"))
    assert predictions
    report = json.loads((result.outputs("report")["report"] / "report.json").read_text())
    assert report["accuracy"] >= 0.8
    assert report["drift"]["drift"] is False  # the training images themselves do not drift
    assert any(result.outputs("explain")["explanations"].iterdir())


def test_model_server_container_answers_and_stops_promptly_on_sigterm(images, training_run, digits,
                                                                     tmp_path):
    opt_ml = tmp_path / "opt_ml"  # all of /opt/ml read-only: a server writes nothing there
    shutil.copytree(training_run.outputs("train")["model"], opt_ml / "model")
    port = free_port()
    name = f"serve-test-{port}"
    podman("run", "-d", "--rm", "--name", name, "--network", "host",
           "-e", f"SAGEMAKER_BIND_TO_PORT={port}", "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=2",
           "-v", f"{opt_ml}:/opt/ml:ro", images["algorithm"], "serve", "--host", "127.0.0.1")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if request(port, "GET", "/ping", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, podman("logs", name, check=False).stderr[-2000:]
            time.sleep(0.5)
        digit_png = next(digits.glob("*/*.png")).read_bytes()
        status, body, _ = request(port, "POST", "/invocations", digit_png,
                                  {"Content-Type": "image/png", "Accept": "application/json"})
        assert status == 200 and isinstance(body, (dict, list)), body
        status, body, _ = request(port, "POST", "/invocations", b"not an image",
                                  {"Content-Type": "image/png"})
        assert 400 <= status < 500 and "Traceback" not in json.dumps(body)
        assert request(port, "GET", "/execution-parameters")[0] == 200
    finally:
        started = time.monotonic()
        podman("stop", "-t", "30", name, check=False)
        stopped_in = time.monotonic() - started
    assert stopped_in < 10, f"SIGTERM took {stopped_in:.1f} s to stop the server"
    assert name not in podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    with pytest.raises(OSError):
        request(port, "GET", "/ping", timeout=2)


def test_a_failing_job_writes_its_reason_and_exits_nonzero(images, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    output = tmp_path / "output"
    output.mkdir()
    result = podman("run", "--rm", "--network", "none", "-v", f"{empty}:/opt/ml/processing/input/data:ro",
                    "-v", f"{output}:/opt/ml/output", images["processing"], "train", check=False)
    assert result.returncode != 0
    assert "no labelled images" in (output / "message").read_text()

    config = tmp_path / "config"
    config.mkdir()
    (config / "hyperparameters.json").write_text(json.dumps({"epochz": "3"}))
    result = podman("run", "--rm", "--network", "none", "-v", f"{config}:/opt/ml/input/config:ro",
                    "-v", f"{output}:/opt/ml/output", images["algorithm"], "train", check=False)
    assert result.returncode != 0
    reason = (output / "failure").read_text()
    assert "epochz" in reason and "epochs" in reason


def test_images_follow_the_sagemaker_container_contract(images, image_tag):
    tag = image_tag
    for component, ref in images.items():
        info = json.loads(podman("image", "inspect", ref).stdout)[0]
        config = info["Config"]
        assert config["Entrypoint"] == ["python", "-m", component]
        assert {"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"} <= set(config["Env"])
        assert not (config.get("WorkingDir") or "/").startswith("/opt/ml")
        labels = config["Labels"]
        assert labels["org.opencontainers.image.revision"] == tag
        assert labels["org.opencontainers.image.version"]
        assert "@" not in labels["org.opencontainers.image.source"]  # no userinfo (credentials)
        if component == "algorithm":
            assert "8080/tcp" in config["ExposedPorts"]
            assert labels["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
        else:
            assert not config.get("ExposedPorts")
    # the base's layers (torch) are the same in all four, so they are stored and pulled once
    layers = [json.loads(podman("image", "inspect", "--format", "{{json .RootFS.Layers}}",
                                ref).stdout) for ref in images.values()]
    shared = set.intersection(*map(set, layers))
    assert len(shared) >= 3


# Credentials, caches, wheels, apt lists, a compiler or secrets in the environment. Local builds
# mount pip.conf and the wheel folders (images/podman/pip_mounts.py); podman leaves their empty
# mount points behind, so those must be empty. Debian's python3-venv keeps ensurepip's two wheels.
FIND_LEFTOVERS = r"""
find / -xdev \( -path /proc -o -path /sys -o -path /usr/share/python-wheels \) -prune -o \
  \( -name .cache -o -name .aws -o -name .netrc -o -name .git -o -name .pypirc -o -name .docker \
     -o -name "*.whl" -o -path "/root/.config/pip*" \) -print
[ -s /etc/pip.conf ] && echo "/etc/pip.conf has content"
for d in /opt/wheels /opt/pypi /opt/pypi-more; do
  [ -d $d ] && [ -n "$(ls -A $d)" ] && echo "$d not empty"
done
ls -A /var/lib/apt/lists 2>/dev/null | grep -vx lock | grep -vx partial
command -v gcc cc c++
env | grep -iE 'aws_|token|secret|password'
true
"""


def test_images_hold_no_credentials_caches_or_build_tools(images):
    for ref in images.values():
        result = podman("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", ref,
                        "-c", FIND_LEFTOVERS)
        leftovers = [line for line in result.stdout.splitlines() if line.strip()]
        assert leftovers == [], f"{ref}: {leftovers}"


def test_a_code_change_rebuilds_only_the_last_layer(images, tmp_path):
    """Change one line of the processing package; every layer but the last comes from cache."""
    context = tmp_path / "context"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, context / name)
    with open(context / "processing" / "__main__.py", "a") as handle:
        handle.write("# a change\n")
    flags = (ROOT / "build" / "podman" / "build-flags").read_text().split()
    base = images["processing"].replace("-processing:", "-base:")
    changed = "localhost/rebuild-test:latest"
    podman("build", *flags, "--build-arg", f"BASE_IMAGE={base}", "-f",
           str(context / "images" / "processing" / "Dockerfile"), "-t", changed, str(context))
    try:
        def layers(ref: str) -> list[str]:
            return json.loads(podman("image", "inspect", "--format", "{{json .RootFS.Layers}}",
                                     ref).stdout)
        before, after = layers(images["processing"]), layers(changed)
        assert len(before) == len(after)
        assert before[:-1] == after[:-1] and before[-1] != after[-1]
    finally:
        podman("rmi", changed, check=False)


def test_make_run_targets_run_an_image_on_the_sample(images, image_tag, tmp_path):
    run_dir = tmp_path / "opt_ml"
    common = ["make", "-s", f"ENGINE={ENGINE}", f"TAG={image_tag}", f"RUN_DIR={run_dir}"]
    result = subprocess.run([*common, "run-explainability-train"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode != 0 and "make run-processing-train" in result.stderr
    result = subprocess.run([*common, "run-processing-train"], cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    train = run_dir / "processing-train" / "opt_ml" / "processing" / "output" / "train"
    assert (train / "manifest.jsonl").is_file() and (train / "classes.json").is_file()


REGISTRY_PORT = 5000  # the one registries.conf marks as plain HTTP (images/podman/setup.sh)


@pytest.fixture
def local_registry(tmp_path):
    """Debian's docker-registry on 127.0.0.1:5000, stopped by this fixture."""
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'blobs'}\n"
                      f"http:\n  addr: 127.0.0.1:{REGISTRY_PORT}\n")
    log = tmp_path / "registry.log"  # a file, not a pipe: it logs every request
    with open(log, "w") as sink:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=sink,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"docker-registry exited: {log.read_text()[-2000:]}"
            try:
                if request(REGISTRY_PORT, "GET", "/v2/", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "docker-registry did not start"
            time.sleep(0.2)
        yield f"127.0.0.1:{REGISTRY_PORT}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(tmp_path / "blobs", ignore_errors=True)  # gigabytes: pytest keeps tmp_path


def test_buildspec_pushes_to_a_registry_and_the_image_pulled_by_digest_runs(images, local_registry,
                                                                            tmp_path, digits):
    """CodeBuild's phases on a fresh clone (as CodeBuild checks out), against the local registry."""
    import yaml

    clone = tmp_path / "source"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    spec = yaml.safe_load((clone / "buildspec.yml").read_text())
    base_digest = podman("image", "inspect", "--format", "{{.Digest}}",
                         "localhost/debian-python:bookworm").stdout.strip()
    env = {**os.environ, **{k: str(v) for k, v in spec["env"]["variables"].items()},
           "ENGINE": ENGINE, "REGISTRY": local_registry,
           "PYTHON_IMAGE": f"localhost/debian-python@{base_digest}",
           "BUILD_FLAGS": (ROOT / "build" / "podman" / "build-flags").read_text().strip(),
           "PYTHON": sys.executable, "EXPORT_PY": sys.executable,  # this venv has the aws group
           "PIPELINE_ROLE": "arn:aws:iam::123456789012:role/SageMakerPipelines",
           "PIPELINE_S3": "s3://example-bucket/mlops", "AWS_DEFAULT_REGION": "eu-west-1"}
    for phase in ("install", "pre_build", "build", "post_build"):
        for command in (spec["phases"].get(phase) or {}).get("commands", []):
            result = subprocess.run(["bash", "-ec", command], cwd=clone, env=env, text=True,
                                    capture_output=True, timeout=1800)
            assert result.returncode == 0, f"{phase}: {command}\n{result.stderr[-3000:]}"
    artifacts = [clone / name for name in spec["artifacts"]["files"]]
    assert all(path.is_file() for path in artifacts)
    uris = json.loads(artifacts[0].read_text())
    assert set(uris) == set(COMPONENTS)
    assert all(uri.startswith(f"{local_registry}/") and "@sha256:" in uri for uri in uris.values())
    for definition in artifacts[1:]:  # the exported pipelines name the pushed images by digest
        named = set(re.findall(r'"(?:ImageUri|TrainingImage|Image)": "([^"]+)"',
                               definition.read_text()))
        assert named and named <= set(uris.values()), (definition.name, named)

    # a separate image store: everything the run needs comes from the registry, by digest
    with tempfile.TemporaryDirectory(prefix="runroot-", dir="/tmp") as runroot:  # podman: <= 50 chars
        store = ["--root", str(tmp_path / "store"), "--runroot", runroot]
        try:
            podman(*store, "pull", "-q", uris["processing"], timeout=1800)
            out = tmp_path / "processed"
            out.mkdir()
            podman(*store, "run", "--rm", "--network", "none",
                   "-v", f"{digits}:/opt/ml/processing/input/data:ro",
                   "-v", f"{out}:/opt/ml/processing/output", uris["processing"], "serve",
                   "--image-size", "16")
            assert (out / "data" / "manifest.jsonl").is_file()
        finally:  # the pulled image is gigabytes: leave no copy behind, passed or failed
            podman(*store, "rmi", "-a", check=False)
            shutil.rmtree(tmp_path / "store", ignore_errors=True)
