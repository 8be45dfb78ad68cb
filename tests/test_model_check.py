"""Validation against botocore's Batch model: types, enums, required and unknown fields."""

from __future__ import annotations

import botocore.session
import pytest

from airflow_sidecar_batch.exceptions import JobDefinitionError
from airflow_sidecar_batch.validation import validate_job_definition
from tests.definitions import (
    APP,
    C0,
    C1,
    PIPE,
    SECRET,
    TASK,
    T,
    _id,
    _node,
    assert_reported,
    mutate,
    valid_definition,
)

MODEL_CASES = [
    # (changes, path, what the message says)
    ([("del", ("jobDefinitionName",))], "jobDefinitionName", r"missing .*requires it"),
    ([("del", ("type",))], "type", "missing"),
    (
        [("set", ("type",), "single")],
        "type",
        r"\(found 'single'\); use one of container, multinode",
    ),
    ([("set", ("type",), "Container")], "type", "did you mean 'container'"),
    ([("set", ("retryStrategie",), {})], "retryStrategie", "unknown field .*'retryStrategy'"),
    ([("set", ("orchestrationType",), "ECS")], "orchestrationType", "ecsProperties already means"),
    ([("set", ("propagateTags",), "true")], "propagateTags", "true or false .*without quotes"),
    ([("set", ("retryStrategy", "attempts"), "1")], "retryStrategy.attempts", "write 1 without"),
    ([("set", ("platformCapabilities",), ["LAMBDA"])], "platformCapabilities[0]", "FARGATE"),
    ([("set", ("platformCapabilities",), "FARGATE")], "platformCapabilities", "must be a list"),
    ([("del", (*T, "containers"))], f"{TASK}.containers", "missing"),
    ([("set", (*T, "cpu"), "1024")], f"{TASK}.cpu", "resourceRequirements"),
    (
        [("set", (*T, "fargatePlatformConfiguration"), {})],
        f"{TASK}.fargatePlatformConfiguration",
        "platformVersion",
    ),
    ([("del", (*C0, "image"))], f"{APP}.image", "missing"),
    ([("set", (*C0, "image"), 42)], f"{APP}.image", "quote it"),
    ([("set", (*C0, "imag"), "x")], f"{APP}.imag", "did you mean 'image'"),
    ([("set", (*C0, "Image"), "x")], f"{APP}.Image", "case-sensitive"),
    ([("set", (*C0, "memory"), 512)], f"{APP}.memory", "MEMORY"),
    ([("set", (*C0, "healthCheck"), {})], f"{APP}.healthCheck", "START"),
    ([("set", (*C0, "portMappings"), [])], f"{APP}.portMappings", "localhost"),
    (
        [("set", (*C0, "resourceRequirements", 0, "type"), "CPU")],
        f"{APP}.resourceRequirements[0].type",
        "use one of GPU, VCPU, MEMORY",
    ),
    (
        [("set", (*C0, "logConfiguration", "logDriver"), "cloudwatch")],
        f"{APP}.logConfiguration.logDriver",
        "use one of json-file",
    ),
    (
        [("del", (*C0, "logConfiguration", "logDriver"))],
        f"{APP}.logConfiguration.logDriver",
        "LogConfiguration requires it",
    ),
    (
        [("set", (*C1, "environment"), {"API_TOKEN": SECRET})],
        f"{PIPE}.environment",
        r"must be a list \(found type dict\)",
    ),
    (
        [("set", (*C1, "environment", 0, "value"), 42)],
        f"{PIPE}.environment[0].value",
        r"must be a string \(found type int\)",
    ),
    (
        [("set", (*C1, "environment", 0, "Value"), SECRET)],
        f"{PIPE}.environment[0].Value",
        "did you mean 'value'",
    ),
    ([("set", ("tags",), {"k" * 129: "v"})], "tags key", "Batch accepts at most 128"),
]


@pytest.mark.parametrize(
    ("changes", "path", "match"), MODEL_CASES, ids=[_id(c) for c in MODEL_CASES]
)
def test_invalid_definitions_report_path_and_fix(changes, path, match):
    assert_reported(mutate(valid_definition(), *changes), path, match)


def test_every_field_of_botocores_model_is_known():
    """New botocore fields are accepted without code changes: the walk reads the model."""
    model = botocore.session.get_session().get_service_model("batch")
    shape = model.operation_model("RegisterJobDefinition").input_shape
    container_shape = shape.members["ecsProperties"].members["taskProperties"].member
    container_shape = container_shape.members["containers"].member
    request = valid_definition()
    for field in container_shape.members:
        _node(request, C0).setdefault(field, None)

    with pytest.raises(JobDefinitionError) as info:
        validate_job_definition(request)

    assert not [p for p in info.value.problems if "unknown field" in p]
