"""The exported training and batch-inference pipelines run by the SageMaker Python SDK's own local
mode on the real images (podman behind the SDK's Docker CLI and docker-compose), and the algorithm
image deployed with the SDK's local mode and smoke-tested through its Predictor.

The data and every job's outputs are in S3, served on 127.0.0.1 by moto's S3 server: the SDK's local
mode reads a condition's property file from S3 only (with file:// outputs the gate fails with
"Invalid json path", its report of `parse_s3_url`'s "Expecting 's3' scheme"). SageMaker itself is
the SDK's own local mode; nothing stands in for it.

What the SDK's local mode cannot run, and what these tests do instead:
- RegisterModel: the SDK refuses it ("Step type RegisterModel is not supported in local mode"),
  checked below; the local export leaves the step out, and the registry's local side is tested
  with the local runner (tests/test_registry.py).
- A checkpoint S3 URI: refused in local mode ("Setting checkpoint_s3_uri is not supported in local
  mode"); the local export leaves it out.
- A failed job: local mode reports the step Succeeded whatever the container's exit code, so these
  tests check every step's outputs themselves.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from tests.images.conftest import ROOT, podman

# The SDK serves a model (an endpoint, a Batch Transform) from a thread of its own, which raises
# when the SDK stops that server's compose: a notice about the SDK, whichever test it lands in.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "mlops-test"


@pytest.fixture(scope="module")
def sdk_environment():
    """podman's Docker API on a socket of this test's own, the wrappers of images/podman/setup.sh
    first in PATH, a region, dummy credentials and the SDK quiet: nothing reaches AWS."""
    wrappers = ROOT / "build" / "podman" / "bin"
    assert (wrappers / "docker").is_file(), "run images/podman/setup.sh (make test-images)"
    before = set(podman("ps", "-aq").stdout.split())
    with tempfile.TemporaryDirectory(prefix="podman-api-") as folder:
        socket = Path(folder) / "podman.sock"
        service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while subprocess.run(["podman", "--url", f"unix://{socket}", "version"],
                                 capture_output=True).returncode != 0:
                assert service.poll() is None, "podman system service exited"
                assert time.monotonic() < deadline, "podman system service did not answer"
                time.sleep(0.2)
            from moto.server import ThreadedMotoServer

            s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            s3.start()
            host, port = s3.get_host_and_port()
            settings = {"PATH": f"{wrappers}:{os.environ['PATH']}",
                        "DOCKER_HOST": f"unix://{socket}", "AWS_DEFAULT_REGION": "eu-west-1",
                        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
                        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
            saved = {k: os.environ.get(k) for k in settings}
            os.environ.update(settings)
            # the SDK gives a model server two minutes to answer /ping; on a saturated machine a
            # cold container (torch imported, the model loaded) can take longer
            from sagemaker.local import entities

            health_limit, entities.HEALTH_CHECK_TIMEOUT_LIMIT = \
                entities.HEALTH_CHECK_TIMEOUT_LIMIT, 600
            try:
                from pipelines.aws import _quiet_sdk

                _quiet_sdk()
                yield
            finally:
                entities.HEALTH_CHECK_TIMEOUT_LIMIT = health_limit
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
                s3.stop()
        finally:
            service.terminate()
            service.wait(timeout=60)
            # the SDK's compose runs leave their exited containers: remove this test's
            left = set(podman("ps", "-aq").stdout.split()) - before
            if left:
                podman("rm", "-f", *sorted(left), check=False)


def local_session(kind="pipeline"):
    """An SDK local session serving models on a free port of its own: the SDK's default, 8080, may
    be taken (another server, a container some earlier run left behind), and the SDK then gives up
    with "endpoint didn't launch correctly" after two minutes."""
    from sagemaker.local import LocalSession
    from sagemaker.workflow.pipeline_context import LocalPipelineSession

    from pipelines.server import free_port

    session = LocalPipelineSession() if kind == "pipeline" else LocalSession()
    local = {"serving_port": free_port(), **({"local_code": True} if kind == "endpoint" else {})}
    session.config = {"local": local}  # the setter hands the port to the runtime client too
    return session


def local_images(images):
    return {c: f"localhost/{ref}" for c, ref in images.items()}


def training_pipeline(images, input_data, output):
    from pipelines.definition import load_pipeline
    from pipelines.export import Exporter, Target

    target = Target(local_images(images), ROLE, output, "eu-west-1",
                    {"input_data": input_data, "epochs": "3", "explain_images": "8"}, local=True)
    return Exporter(load_pipeline(ROOT / "pipelines" / "training.yaml"), target,
                    local_session()).export()


@pytest.fixture(scope="module")
def bucket(sdk_environment, digits_folder):
    """A bucket holding the digits as an ImageFolder under digits/."""
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for path in sorted(digits_folder.rglob("*.png")):
        s3.upload_file(str(path), BUCKET, f"digits/{path.relative_to(digits_folder)}")
    return s3


@pytest.fixture(scope="module")
def training_run(bucket, images):
    """The exported training pipeline, run once by the SDK's LocalPipelineSession: (its
    execution, the S3 prefix of its outputs)."""
    pipeline = training_pipeline(images, f"s3://{BUCKET}/digits", f"s3://{BUCKET}/mlops")
    pipeline.create(role_arn=ROLE)
    execution = pipeline.start()
    runs = {key.split("/")[2] for key in keys(bucket, "mlops/training/")}
    assert len(runs) == 1, runs  # outputs go to <s3>/<pipeline>/<execution id>/<step>/<output>
    return execution, f"mlops/training/{runs.pop()}"


def keys(s3, prefix):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_the_sdk_refuses_to_run_a_registration_locally(sdk_environment, images, tmp_path):
    """Why the local export leaves the register step out: the exact error of the SDK."""
    from botocore.exceptions import ClientError
    from sagemaker.model import Model
    from sagemaker.workflow.model_step import ModelStep
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.pipeline_context import LocalPipelineSession

    session = LocalPipelineSession()
    model = Model(image_uri=local_images(images)["algorithm"], role=ROLE, sagemaker_session=session,
                  model_data=f"file://{tmp_path / 'model.tar.gz'}")
    register = ModelStep("register", step_args=model.register(
        content_types=["image/png"], response_types=["application/json"],
        inference_instances=["ml.m5.large"], transform_instances=["ml.m5.large"],
        model_package_group_name="image-classifier"))
    pipeline = Pipeline(name="registration", steps=[register], sagemaker_session=session)
    pipeline.create(role_arn=ROLE)
    with pytest.raises(ClientError, match="Step type RegisterModel is not supported in local mode"):
        pipeline.start()


def test_the_exported_training_pipeline_runs_in_the_sdks_local_mode(training_run, bucket):
    execution, run = training_run
    described = execution.describe()
    steps = {s["StepName"]: s for s in execution.list_steps()["PipelineExecutionSteps"]}
    assert described["PipelineExecutionStatus"] == "Succeeded", failures(steps)
    assert set(steps) == {"process", "train", "evaluate", "check_evaluation", "drift_reference",
                          "explain"}
    assert all(s["StepStatus"] == "Succeeded" for s in steps.values()), steps
    assert steps["check_evaluation"]["Metadata"]["Condition"]["Outcome"] is True
    # local mode calls a failed job a success: the outputs show each step really ran
    written = keys(bucket, run)
    model = next(k for k in written if k.endswith("/output/model.tar.gz"))
    with tarfile.open(fileobj=io.BytesIO(read(bucket, model))) as tar:
        assert {"model.safetensors", "model.json"} <= set(tar.getnames())
    evaluation = json.loads(read(bucket, f"{run}/evaluate/evaluation/evaluation.json"))
    assert evaluation["multiclass_classification_metrics"]["accuracy"]["value"] >= 0.9
    assert f"{run}/drift_reference/detector/detector.json" in written
    assert f"{run}/explain/explanations/summary.json" in written


def failures(steps) -> dict[str, str]:
    return {name: s.get("FailureReason", "") for name, s in steps.items()
            if s["StepStatus"] != "Succeeded"}


def read(s3, key) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_the_algorithm_image_deployed_in_the_sdks_local_mode_passes_the_smoke_test(
        training_run, bucket, images, digits_folder, tmp_path):
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.model import Model
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import IdentitySerializer

    from pipelines.deploy import smoke_test

    _, run = training_run
    trained = next(k for k in keys(bucket, run) if k.endswith("/output/model.tar.gz"))
    model_dir = tmp_path / "model"  # the SDK mounts the tarball's folder: only the model in it
    model_dir.mkdir()
    (model_dir / "model.tar.gz").write_bytes(read(bucket, trained))
    session = local_session("endpoint")
    samples = tmp_path / "samples"  # two images of each digit
    for label in sorted(digits_folder.iterdir()):
        (samples / label.name).mkdir(parents=True)
        for path in sorted(label.iterdir())[:2]:
            (samples / label.name / path.name).write_bytes(path.read_bytes())
    model = Model(image_uri=local_images(images)["algorithm"], role=ROLE, predictor_cls=Predictor,
                  model_data=f"file://{model_dir / 'model.tar.gz'}", sagemaker_session=session)
    try:
        predictor = model.deploy(initial_instance_count=1, instance_type="local",
                                 serializer=IdentitySerializer("image/png"),
                                 deserializer=JSONDeserializer())
        wrong = smoke_test(lambda body, content_type: predictor.predict(body), samples)
    finally:  # the model server's container stops, deployed or half-way
        if model.endpoint_name:
            session.delete_endpoint(model.endpoint_name)
    assert len(wrong) <= 2, wrong  # three epochs: nearly all right


def test_the_exported_batch_pipeline_runs_in_the_sdks_local_mode(training_run, bucket, images,
                                                                 digits_folder):
    """Model creation, Batch Transform, the drift test, explanations and the drift condition, on
    the model and detector the training run wrote (as `start` would pass them)."""
    from pipelines.definition import load_pipeline
    from pipelines.export import Exporter, Target

    _, run = training_run
    model = next(k for k in keys(bucket, run) if k.endswith("/output/model.tar.gz"))
    target = Target(local_images(images), ROLE, f"s3://{BUCKET}/mlops", "eu-west-1",
                    {"input_data": f"s3://{BUCKET}/digits", "model": f"s3://{BUCKET}/{model}",
                     "detector": f"s3://{BUCKET}/{run}/drift_reference/detector",
                     "explain_images": "4"}, local=True)
    pipeline = Exporter(load_pipeline(ROOT / "pipelines" / "batch_inference.yaml"), target,
                        local_session()).export()
    pipeline.create(role_arn=ROLE)
    execution = pipeline.start()
    steps = {s["StepName"]: s for s in execution.list_steps()["PipelineExecutionSteps"]}
    assert execution.describe()["PipelineExecutionStatus"] == "Succeeded", failures(steps)
    assert set(steps) == {"process", "transform-model-CreateModel", "transform", "drift",
                          "explain", "drifted"}
    assert all(s["StepStatus"] == "Succeeded" for s in steps.values()), steps
    # the production images are the reference's own: no drift, so no retraining branch
    assert steps["drifted"]["Metadata"]["Condition"]["Outcome"] is False
    runs = {key.split("/")[2] for key in keys(bucket, "mlops/batch_inference/")}
    assert len(runs) == 1, runs
    prefix = f"mlops/batch_inference/{runs.pop()}"
    written = keys(bucket, prefix)
    assert json.loads(read(bucket, f"{prefix}/drift/report/drift.json"))["drift"] is False
    answers = [json.loads(line) for key in written if key.startswith(f"{prefix}/transform/")
               and key.endswith(".npy.out") for line in read(bucket, key).decode().splitlines()]
    images_in = sum(1 for _ in digits_folder.rglob("*.png"))
    assert len(answers) == images_in  # one answer per image, the manifest never sent
    assert f"{prefix}/explain/explanations/summary.json" in written
