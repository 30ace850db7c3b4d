"""`python -m pipelines deploy` and `smoke-test`: an Approved model package version behind a
serverless staging or an instance production endpoint, and labelled images sent to it. botocore's
Stubber answers in place of SageMaker and checks every request against its API model; the real
deployment of the algorithm image and its smoke test run with the SDK's local mode in
tests/images/test_sagemaker_local.py."""

from __future__ import annotations

import pytest
from botocore.stub import ANY

from pipelines.definition import PipelineError
from pipelines.deploy import deploy, smoke_test
from tests.sagemaker_api import stubbed_sagemaker

GROUP = "image-classifier"
ROLE = "arn:aws:iam::123456789012:role/SageMakerEndpoints"
ARN = f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/{GROUP}/2"
ENDPOINT_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/x"


@pytest.fixture
def sagemaker():
    with stubbed_sagemaker() as stubbed:
        yield stubbed


def expect_package(stubber, status):
    stubber.add_response("list_model_packages", {"ModelPackageSummaryList": [
        {"ModelPackageArn": ARN.replace("/2", "/1"), "ModelPackageVersion": 1,
         "ModelPackageStatus": "Completed", "CreationTime": "2026-11-26T00:00:00Z"},
        {"ModelPackageArn": ARN, "ModelPackageVersion": 2, "ModelPackageStatus": "Completed",
         "CreationTime": "2026-11-27T00:00:00Z"}]}, {"ModelPackageGroupName": GROUP})
    stubber.add_response("describe_model_package", {
        "ModelPackageName": GROUP, "ModelPackageArn": ARN, "ModelPackageStatus": "Completed",
        "CreationTime": "2026-11-27T00:00:00Z", "ModelApprovalStatus": status,
        "ModelPackageStatusDetails": {"ValidationStatuses": []}}, {"ModelPackageName": ARN})


def expect_model_and_config(stubber, stage, variant):
    name = f"{GROUP}-v2-{stage}-20261127"
    stubber.add_response("create_model", {"ModelArn": f"arn:aws:sagemaker:eu-west-1:1:model/{name}"},
                         {"ModelName": name, "ExecutionRoleArn": ROLE,
                          "PrimaryContainer": {"ModelPackageName": ARN}})
    stubber.add_response("create_endpoint_config", {"EndpointConfigArn": ENDPOINT_ARN},
                         {"EndpointConfigName": name, "ProductionVariants": [
                             {"VariantName": "AllTraffic", "ModelName": name, **variant}]})
    return name


def test_staging_is_a_new_serverless_endpoint(sagemaker):
    client, stubber = sagemaker
    expect_package(stubber, "Approved")
    config = expect_model_and_config(stubber, "staging", {"ServerlessConfig": {
        "MemorySizeInMB": 4096, "MaxConcurrency": 5}})
    stubber.add_client_error("describe_endpoint", "ValidationException",
                             "Could not find endpoint \"image-classifier-staging\".",
                             expected_params={"EndpointName": f"{GROUP}-staging"})
    stubber.add_response("create_endpoint", {"EndpointArn": ENDPOINT_ARN},
                         {"EndpointName": f"{GROUP}-staging", "EndpointConfigName": config})
    assert deploy(client, GROUP, 2, "staging", ROLE, stamp="20261127") == f"{GROUP}-staging"


def test_production_on_instances_updates_the_running_endpoint(sagemaker):
    client, stubber = sagemaker
    expect_package(stubber, "Approved")
    config = expect_model_and_config(stubber, "production", {
        "InstanceType": "ml.m5.large", "InitialInstanceCount": 1, "InitialVariantWeight": 1.0})
    stubber.add_response("describe_endpoint", {
        "EndpointName": f"{GROUP}-production", "EndpointArn": ENDPOINT_ARN,
        "EndpointConfigName": "older", "EndpointStatus": "InService",
        "CreationTime": "2026-11-01T00:00:00Z", "LastModifiedTime": "2026-11-01T00:00:00Z"},
        {"EndpointName": f"{GROUP}-production"})
    stubber.add_response("update_endpoint", {"EndpointArn": ENDPOINT_ARN},
                         {"EndpointName": f"{GROUP}-production", "EndpointConfigName": config})
    assert deploy(client, GROUP, 2, "production", ROLE, stamp="20261127") == \
        f"{GROUP}-production"


def test_only_an_approved_version_is_deployed(sagemaker):
    client, stubber = sagemaker
    expect_package(stubber, "PendingManualApproval")
    with pytest.raises(PipelineError, match="v2 is PendingManualApproval: only an Approved"):
        deploy(client, GROUP, 2, "staging", ROLE)
    stubber.add_response("list_model_packages", {"ModelPackageSummaryList": []},
                         {"ModelPackageGroupName": ANY})
    with pytest.raises(PipelineError, match="has no version 7"):
        deploy(client, GROUP, 7, "production", ROLE)


def test_the_smoke_test_names_every_wrong_answer(tmp_path):
    for label, names in {"cat": ["a.png", "b.jpg"], "dog": ["c.jpeg"]}.items():
        (tmp_path / label).mkdir()
        for name in names:
            (tmp_path / label / name).write_bytes(label.encode())
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    sent = []

    def predict(body, content_type):
        sent.append(content_type)
        return {"label": "cat"}  # a model that always answers cat

    assert smoke_test(predict, tmp_path) == ["dog/c.jpeg: answered 'cat'"]
    assert sent == ["image/png", "image/jpeg", "image/jpeg"]
    with pytest.raises(PipelineError, match="no <class>/<image> files"):
        smoke_test(predict, tmp_path / "dog")
