"""Checking request bodies against the SageMaker API model that botocore ships (no AWS needed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

PIPELINE_EXPRESSIONS = ("Get", "Std:Join", "Std:JsonGet")  # resolved by SageMaker at run time
PLACEHOLDERS = {"string": "x", "integer": 1, "long": 1, "float": 1.0, "double": 1.0,
                "boolean": True}


def input_shape(operation: str) -> Any:
    return botocore.session.get_session().get_service_model("sagemaker").operation_model(
        operation).input_shape


def enum_errors(value: Any, shape: Any, where: str = "") -> list[str]:
    """botocore's validator checks types, required members and lengths; enums are checked here."""
    errors = []
    enum = getattr(shape, "enum", None)
    if enum and value not in enum:
        errors.append(f"{where}: {value!r} not in {enum}")
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            if name in value:
                errors += enum_errors(value[name], member, f"{where}.{name}")
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            errors += enum_errors(item, shape.member, f"{where}[{i}]")
    elif shape.type_name == "map":
        for key, item in value.items():
            errors += enum_errors(item, shape.value, f"{where}[{key}]")
    return errors


def concrete(value: Any, shape: Any, defaults: dict[str, Any]) -> Any:
    """`value` with each pipeline expression replaced by what it gives: a parameter's default,
    else a value of the member's type (its first allowed value where it has a list)."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in PIPELINE_EXPRESSIONS:
        target = value.get("Get", "")
        if target.startswith("Parameters.") and target[11:] in defaults:
            return defaults[target[11:]]
        enum = getattr(shape, "enum", None)
        return enum[0] if enum else PLACEHOLDERS.get(shape.type_name, "x")
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: concrete(v, shape.members[k], defaults) if k in shape.members else v
                for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [concrete(v, shape.member, defaults) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: concrete(v, shape.value, defaults) for k, v in value.items()}
    return value


def request_errors(body: dict[str, Any], operation: str,
                   defaults: dict[str, Any] | None = None) -> list[str]:
    """What SageMaker's API model refuses in a request body whose pipeline expressions take the
    pipeline parameters' `defaults` (or a placeholder of the member's type)."""
    shape = input_shape(operation)
    body = concrete(body, shape, defaults or {})
    report = ParamValidator().validate(body, shape)
    return ([report.generate_report()] if report.has_errors() else []) + enum_errors(body, shape)


@contextmanager
def stubbed_sagemaker() -> Iterator[tuple[Any, Any]]:
    """(a SageMaker client, its botocore Stubber): the Stubber answers in place of SageMaker and
    checks every request against the API model; every queued answer must have been asked for."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.Session(region_name="eu-west-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing").client("sagemaker")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()
