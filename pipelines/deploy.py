"""Deploying an approved model package, and the smoke test that gates it.

`python -m pipelines deploy NAME VERSION --stage staging|production --role ARN` puts version VERSION
of model package group NAME behind an endpoint `<NAME>-<stage>`: staging on serverless inference
(pay per request), production on instances. The version must be Approved. An existing endpoint is
updated to the new configuration (SageMaker swaps it without downtime). With `--smoke-images DIR`
(an ImageFolder, `<class>/<image>`) the deployment waits for the endpoint and sends it every image;
a wrong answer fails the command, and says which.

The calls are boto3's (create_model with the package as its container, create_endpoint_config,
create_endpoint or update_endpoint): tests check them against SageMaker's API model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipelines.aws import APPROVED
from pipelines.definition import PipelineError

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass(frozen=True)
class Stage:
    """How one stage serves: serverless (memory, concurrency) or instances (type, count)."""

    serverless: bool
    memory_mb: int = 4096  # serverless: 1024..6144 in steps of 1024
    max_concurrency: int = 5
    instance_type: str = "ml.m5.large"
    instance_count: int = 1

    def variant(self, model_name: str) -> dict[str, Any]:
        variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": model_name}
        if self.serverless:
            variant["ServerlessConfig"] = {"MemorySizeInMB": self.memory_mb,
                                           "MaxConcurrency": self.max_concurrency}
        else:
            variant.update(InstanceType=self.instance_type,
                           InitialInstanceCount=self.instance_count, InitialVariantWeight=1.0)
        return variant


STAGES = {"staging": Stage(serverless=True), "production": Stage(serverless=False)}


def find_package(client: Any, group: str, version: int) -> dict[str, Any]:
    """DescribeModelPackage's answer for version `version` of `group`."""
    pages = client.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group)
    for page in pages:
        for summary in page.get("ModelPackageSummaryList") or []:
            if summary.get("ModelPackageVersion") == version:
                return client.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    raise PipelineError(f"model package group {group} has no version {version}")


def deploy(client: Any, group: str, version: int, stage: str, role: str,
           stamp: str | None = None) -> str:
    """Deploy an Approved version to the stage's endpoint; the endpoint's name."""
    if stage not in STAGES:
        raise PipelineError(f"stage {stage!r} is not one of {', '.join(STAGES)}")
    package = find_package(client, group, version)
    status = package.get("ModelApprovalStatus")
    if status != APPROVED:
        raise PipelineError(f"{group} v{version} is {status}: only an Approved version is deployed"
                            " (aws sagemaker update-model-package --model-approval-status"
                            " Approved)")
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    model_name = f"{group}-v{version}-{stage}-{stamp}"[:63]
    client.create_model(ModelName=model_name, ExecutionRoleArn=role,
                        PrimaryContainer={"ModelPackageName": package["ModelPackageArn"]})
    client.create_endpoint_config(EndpointConfigName=model_name,
                                  ProductionVariants=[STAGES[stage].variant(model_name)])
    endpoint = f"{group}-{stage}"[:63]
    try:
        client.describe_endpoint(EndpointName=endpoint)
    except ClientError as exc:
        if "Could not find endpoint" not in str(exc):
            raise
        client.create_endpoint(EndpointName=endpoint, EndpointConfigName=model_name)
    else:
        client.update_endpoint(EndpointName=endpoint, EndpointConfigName=model_name)
    return endpoint


Predict = Callable[[bytes, str], dict[str, Any]]  # (image bytes, content type) -> the answer


def labelled_images(folder: Path) -> list[tuple[str, Path]]:
    """(class, image) for every image of an ImageFolder, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"smoke-test images {folder}: no such folder")
    found = [(label.name, path) for label in sorted(p for p in folder.iterdir() if p.is_dir())
             for path in sorted(label.rglob("*")) if path.suffix.lower() in CONTENT_TYPES]
    if not found:
        raise PipelineError(f"smoke-test images {folder}: no <class>/<image> files"
                            f" ({', '.join(CONTENT_TYPES)})")
    return found


def smoke_test(predict: Predict, folder: Path) -> list[str]:
    """Send every labelled image; one line per wrong answer (none: the endpoint passed)."""
    wrong = []
    for label, path in labelled_images(folder):
        answer = predict(path.read_bytes(), CONTENT_TYPES[path.suffix.lower()])
        if answer.get("label") != label:
            wrong.append(f"{path.relative_to(folder)}: answered {answer.get('label')!r}")
    return wrong


def endpoint_predictor(runtime: Any, endpoint: str) -> Predict:
    def predict(body: bytes, content_type: str) -> dict[str, Any]:
        answer = runtime.invoke_endpoint(EndpointName=endpoint, ContentType=content_type,
                                         Accept="application/json", Body=body)
        return json.loads(answer["Body"].read())
    return predict
