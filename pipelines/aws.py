"""The SageMaker Python SDK and boto3 for users with credentials: sessions, `upsert`, `start`.

Imported only by the export and the commands that talk to AWS: the `aws` extra (never in the
images). The SDK's telemetry and its v2 deprecation notice are turned off before it is imported.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

from pipelines.definition import PipelineError

APPROVED, PENDING, REJECTED = "Approved", "PendingManualApproval", "Rejected"


def _quiet_sdk() -> None:
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    config = Path(__file__).with_name("sagemaker-config.yaml")
    os.environ.setdefault("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    os.environ.setdefault("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", str(config))
    # its notices (fields it leaves for execution time, config lookups, telemetry) are not ours
    for name in ("sagemaker", "sagemaker.config"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Running within a PipelineSession")


def pipeline_session(region: str) -> Any:
    """A PipelineSession in `region`: building a definition needs no credentials."""
    _quiet_sdk()
    try:
        import boto3
        from sagemaker.workflow.pipeline_context import PipelineSession
    except ImportError as exc:
        raise PipelineError(f"the export needs the SageMaker SDK: pip install '.[aws]' ({exc})") \
            from None
    _validate_config_once()
    return PipelineSession(boto_session=boto3.Session(region_name=region))


def _validate_config_once() -> None:
    """The SDK checks its configuration against its JSON schema at every value it looks up, and
    jsonschema checks the schema itself each time: 0.26 s a lookup, 25 s of a 28 s export with
    ~100 lookups. The configuration is this module's file and does not change within a process,
    so each distinct one is validated once, by the SDK's own function."""
    import sagemaker.utils

    validate = sagemaker.utils.validate_sagemaker_config
    if getattr(validate, "once", False):
        return
    valid: list[dict] = []

    def validate_once(config: dict | None = None) -> None:
        if config not in valid:
            validate(config)
            valid.append(copy.deepcopy(config))

    validate_once.once = True
    sagemaker.utils.validate_sagemaker_config = validate_once


def sagemaker_client(region: str | None, service: str = "sagemaker") -> Any:
    _quiet_sdk()
    import boto3

    return boto3.Session(region_name=region).client(service)


def registered_groups(definition: dict[str, Any]) -> set[str]:
    """The model package groups a definition's RegisterModel steps write to (a parameter's
    default where the group is a parameter)."""
    defaults = {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])}
    groups, stack = set(), list(definition.get("Steps", []))
    while stack:
        step = stack.pop()
        arguments = step.get("Arguments", {})
        stack += arguments.get("IfSteps", []) + arguments.get("ElseSteps", [])
        if step.get("Type") == "RegisterModel":
            group = arguments.get("ModelPackageGroupName")
            if isinstance(group, dict):
                group = defaults.get(str(group.get("Get", "")).removeprefix("Parameters."))
            if group:
                groups.add(group)
    return groups


def ensure_group(client: Any, group: str) -> bool:
    """Create model package group `group` unless it exists; whether it was created."""
    try:
        client.describe_model_package_group(ModelPackageGroupName=group)
        return False
    except client.exceptions.ClientError as exc:
        if "does not exist" not in str(exc):
            raise
    client.create_model_package_group(
        ModelPackageGroupName=group, ModelPackageGroupDescription="image classifiers registered"
        " by the sagemaker-image-mlops training pipeline, each pending approval")
    return True


def upsert(client: Any, name: str, definition: Path, role: str, description: str = "") -> str:
    """Create the pipeline, or update it when it exists; its ARN. The model package groups it
    registers to are created first when missing."""
    for group in sorted(registered_groups(json.loads(definition.read_text()))):
        ensure_group(client, group)
    body = {"PipelineName": name, "PipelineDefinition": definition.read_text(), "RoleArn": role,
            **({"PipelineDescription": description} if description else {})}
    try:
        return client.create_pipeline(**body)["PipelineArn"]
    except client.exceptions.ResourceInUse:
        return client.update_pipeline(**body)["PipelineArn"]


def latest_package(client: Any, group: str, status: str = APPROVED) -> dict[str, Any] | None:
    """The newest model package of `group` with `status` (DescribeModelPackage's answer)."""
    found = client.list_model_packages(ModelPackageGroupName=group, ModelApprovalStatus=status,
                                       SortBy="CreationTime", SortOrder="Descending", MaxResults=1)
    summaries = found.get("ModelPackageSummaryList") or []
    if not summaries:
        return None
    return client.describe_model_package(ModelPackageName=summaries[0]["ModelPackageArn"])


def retrained_from(client: Any, group: str, model: str, statuses: tuple[str, ...]) -> list[str]:
    """ARNs of the group's packages with one of `statuses` retrained from `model`."""
    held = []
    for status in statuses:
        pages = client.get_paginator("list_model_packages").paginate(
            ModelPackageGroupName=group, ModelApprovalStatus=status)
        for page in pages:
            for summary in page.get("ModelPackageSummaryList") or []:
                package = client.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
                if (package.get("CustomerMetadataProperties") or {}).get("retrained_from") == model:
                    held.append(summary["ModelPackageArn"])
    return held


def start_parameters(client: Any, definition: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    """The parameters to start an exported pipeline with: the given ones, plus what the registry
    answers for the ones the export left to `start` (the model and detector in use, a champion to
    beat, and the retraining guard's verdict)."""
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise PipelineError(f"unknown parameter(s) {', '.join(unknown)}; the pipeline takes:"
                            f" {', '.join(declared)}")
    values = dict(given)
    group = given.get("model_package_name") or declared.get("model_package_name", {}).get(
        "DefaultValue")
    wants_model = "model" in declared and "model" not in given
    if group and (wants_model or ("champion_model" in declared and "champion_model" not in given)):
        package = latest_package(client, group)
        if package is None and wants_model:
            raise PipelineError(f"model package group {group} has no Approved version: approve one"
                                " (aws sagemaker update-model-package --model-approval-status"
                                " Approved) or pass --param model=s3://...")
        if package is not None:
            model = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
            metadata = package.get("CustomerMetadataProperties") or {}
            if wants_model:
                values["model"] = model
                if "detector" in declared and "detector" not in given:
                    if "detector" not in metadata:
                        raise PipelineError(f"{package['ModelPackageArn']} has no detector in its"
                                            " metadata: pass --param detector=s3://...")
                    values["detector"] = metadata["detector"]
            elif "champion_model" in declared:
                values["champion_model"] = model
    if "retrain_allowed" in declared and "retrain_allowed" not in given and group and "model" in values:
        held = retrained_from(client, group, values["model"], (PENDING, REJECTED))
        values["retrain_allowed"] = "false" if held else "true"
    return values


def start(client: Any, name: str, given: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Start an execution of pipeline `name`; (its ARN, the parameters it got)."""
    described = client.describe_pipeline(PipelineName=name)
    values = start_parameters(client, json.loads(described["PipelineDefinition"]), given)
    answer = client.start_pipeline_execution(
        PipelineName=name, PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in values.items()])
    return answer["PipelineExecutionArn"], values
