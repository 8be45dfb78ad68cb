"""Validation of RegisterJobDefinition requests, and the submit-side checks."""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import re
from decimal import Decimal
from typing import Any

import botocore.session
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_sidecar_batch.compiler import compile_job_definition
from airflow_sidecar_batch.exceptions import JobDefinitionError, SubmitRequestError
from airflow_sidecar_batch.validation import (
    FARGATE_SIZES,
    check_overrides,
    check_parameters,
    check_submit_size,
    job_name_for,
    lint_job_definition,
    validate_job_definition,
)

SECRET = "s3cr3t-token-value"
TASK = "ecsProperties.taskProperties[0]"
APP = f"{TASK}.containers[0]"
PIPE = f"{TASK}.containers[1]"


def valid_definition() -> dict[str, Any]:
    """A Batch-shaped sidecar definition that Batch accepts."""
    return {
        "jobDefinitionName": "sidecar-export",
        "type": "container",
        "platformCapabilities": ["FARGATE"],
        "parameters": {"EVENT_JSON": "{}"},
        "retryStrategy": {"attempts": 1},
        "timeout": {"attemptDurationSeconds": 3600},
        "propagateTags": True,
        "tags": {"project": "sidecar"},
        "ecsProperties": {
            "taskProperties": [
                {
                    "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
                    "taskRoleArn": "arn:aws:iam::123456789012:role/task",
                    "platformVersion": "LATEST",
                    "networkConfiguration": {"assignPublicIp": "ENABLED"},
                    "ephemeralStorage": {"sizeInGiB": 30},
                    "containers": [
                        {
                            "name": "main-app",
                            "image": "main-app:latest",
                            "essential": False,
                            "environment": [{"name": "PORT", "value": "8080"}],
                            "resourceRequirements": [
                                {"type": "VCPU", "value": "0.25"},
                                {"type": "MEMORY", "value": "1024"},
                            ],
                            "logConfiguration": {
                                "logDriver": "awslogs",
                                "options": {"awslogs-region": "us-east-1"},
                            },
                        },
                        {
                            "name": "data-pipeline",
                            "image": "data-pipeline:latest",
                            "dependsOn": [{"containerName": "main-app", "condition": "START"}],
                            "command": ["Ref::EVENT_JSON"],
                            "environment": [{"name": "API_TOKEN", "value": SECRET}],
                            "resourceRequirements": [
                                {"type": "VCPU", "value": "0.25"},
                                {"type": "MEMORY", "value": "1024"},
                            ],
                        },
                    ],
                }
            ]
        },
    }


def _node(document: Any, keys: tuple) -> Any:
    for key in keys:
        document = document[key]
    return document


def mutate(document: dict[str, Any], *changes: tuple) -> dict[str, Any]:
    """Apply ``("set", keys, value)``, ``("del", keys)`` or ``("append", keys, value)``."""
    for change in changes:
        op, keys = change[0], change[1]
        parent = _node(document, keys[:-1])
        if op == "set":
            parent[keys[-1]] = change[2]
        elif op == "del":
            del parent[keys[-1]]
        else:
            parent[keys[-1]].append(change[2])
    return document


T = ("ecsProperties", "taskProperties", 0)
C0 = (*T, "containers", 0)
C1 = (*T, "containers", 1)
REQ = {"type": "VCPU", "value": "0.25"}

INVALID = [
    # (changes, path, what the message says)
    ([("set", ("jobDefinitionName",), "daily export!")], "jobDefinitionName", "up to 128 letters"),
    ([("set", ("jobDefinitionName",), "x" * 129)], "jobDefinitionName", "129 characters"),
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
    ([("set", ("retryStrategy", "attempts"), 11)], "retryStrategy.attempts", "from 1 to 10"),
    ([("set", ("timeout", "attemptDurationSeconds"), 30)], "timeout.attemptDurationSeconds", "60"),
    ([("set", ("schedulingPriority",), 10000)], "schedulingPriority", "from 0 to 9999"),
    ([("set", ("platformCapabilities",), ["LAMBDA"])], "platformCapabilities[0]", "FARGATE"),
    ([("set", ("platformCapabilities",), "FARGATE")], "platformCapabilities", "must be a list"),
    ([("del", ("platformCapabilities",))], "platformCapabilities", r"\["),
    (
        [("append", ("ecsProperties", "taskProperties"), {"containers": []})],
        "ecsProperties.taskProperties",
        r"exactly one task \(found 2\)",
    ),
    (
        [("set", ("ecsProperties", "taskProperties"), [])],
        "ecsProperties.taskProperties",
        "found none",
    ),
    (
        [("set", ("containerProperties",), {"image": "x"})],
        "containerProperties",
        "cannot be combined with ecsProperties",
    ),
    (
        [("del", ("ecsProperties",)), ("del", ("platformCapabilities",))],
        "ecsProperties",
        "needs one of containerProperties, ecsProperties",
    ),
    ([("set", ("type",), "multinode")], "type", "Fargate does not run multinode"),
    ([("del", (*T, "containers"))], f"{TASK}.containers", "missing"),
    ([("set", (*T, "containers"), [])], f"{TASK}.containers", "at least one container"),
    (
        [("set", (*T, "containers"), [{"name": f"c{i}", "image": "x"} for i in range(11)])],
        f"{TASK}.containers",
        r"at most 10 containers \(found 11\)",
    ),
    ([("set", (*T, "cpu"), "1024")], f"{TASK}.cpu", "resourceRequirements"),
    (
        [("set", (*T, "fargatePlatformConfiguration"), {})],
        f"{TASK}.fargatePlatformConfiguration",
        "platformVersion",
    ),
    (
        [("del", (*T, "executionRoleArn"))],
        f"{TASK}.executionRoleArn",
        "Fargate jobs always need an execution role",
    ),
    (
        [("set", (*T, "executionRoleArn"), "ecsTaskExecutionRole")],
        f"{TASK}.executionRoleArn",
        "not an IAM role ARN",
    ),
    (
        [("set", (*T, "ephemeralStorage", "sizeInGiB"), 10)],
        f"{TASK}.ephemeralStorage.sizeInGiB",
        "from 21 to 200",
    ),
    ([("del", (*C0, "image"))], f"{APP}.image", "missing"),
    ([("set", (*C0, "image"), 42)], f"{APP}.image", "quote it"),
    ([("set", (*C0, "imag"), "x")], f"{APP}.imag", "did you mean 'image'"),
    ([("set", (*C0, "Image"), "x")], f"{APP}.Image", "case-sensitive"),
    ([("set", (*C0, "memory"), 512)], f"{APP}.memory", "MEMORY"),
    ([("set", (*C0, "healthCheck"), {})], f"{APP}.healthCheck", "START"),
    ([("set", (*C0, "portMappings"), [])], f"{APP}.portMappings", "localhost"),
    ([("set", (*C1, "essential"), False)], f"{TASK}.containers", "no essential container"),
    ([("set", (*C1, "name"), "main-app")], f"{PIPE}.name", "must be unique"),
    ([("del", (*C0, "name"))], f"{APP}.name", "name every container"),
    ([("set", (*C0, "name"), "main app")], f"{APP}.name", "'main-app'"),
    (
        [("set", (*C1, "dependsOn", 0, "containerName"), "app")],
        f"{PIPE}.dependsOn[0].containerName",
        "use one of data-pipeline, main-app",
    ),
    (
        [("set", (*C1, "dependsOn", 0, "condition"), "HEALTHY")],
        f"{PIPE}.dependsOn[0].condition",
        "Batch has no HEALTHY",
    ),
    (
        [("set", (*C1, "dependsOn", 0, "condition"), "STARTED")],
        f"{PIPE}.dependsOn[0].condition",
        "START, COMPLETE or SUCCESS",
    ),
    ([("del", (*C1, "dependsOn", 0, "condition"))], f"{PIPE}.dependsOn[0].condition", "missing"),
    (
        [
            ("set", (*C0, "essential"), True),
            ("set", (*C1, "dependsOn", 0, "condition"), "COMPLETE"),
        ],
        f"{PIPE}.dependsOn[0].condition",
        "cannot target an essential container",
    ),
    (
        [("set", (*C0, "dependsOn"), [{"containerName": "data-pipeline", "condition": "START"}])],
        f"{PIPE}.dependsOn[0].containerName",
        "data-pipeline -> main-app -> data-pipeline",
    ),
    (
        [("set", (*C0, "dependsOn"), [{"containerName": "main-app", "condition": "START"}])],
        f"{APP}.dependsOn[0].containerName",
        "main-app -> main-app",
    ),
    (
        [("del", (*C0, "resourceRequirements", 0))],
        f"{APP}.resourceRequirements",
        r"found MEMORY\); add \{\"type\": \"VCPU\"",
    ),
    (
        [("set", (*C0, "resourceRequirements", 0, "value"), "half")],
        f"{APP}.resourceRequirements[0].value",
        "positive number of vCPU",
    ),
    (
        [("set", (*C0, "resourceRequirements", 1, "value"), "1.5")],
        f"{APP}.resourceRequirements[1].value",
        "whole number of MiB",
    ),
    (
        [("append", (*C0, "resourceRequirements"), {"type": "GPU", "value": "1"})],
        f"{APP}.resourceRequirements[2].type",
        "Fargate has no GPUs",
    ),
    (
        [("append", (*C0, "resourceRequirements"), REQ)],
        f"{APP}.resourceRequirements[2].type",
        "VCPU is given twice",
    ),
    (
        [("set", (*C0, "resourceRequirements", 0, "type"), "CPU")],
        f"{APP}.resourceRequirements[0].type",
        "use one of GPU, VCPU, MEMORY",
    ),
    (
        [("set", (*C0, "resourceRequirements", 1, "value"), "512")],
        f"{TASK}.containers",
        r"MEMORY 512 \+ 1024 = 1536\); with 0.5 vCPU make the total MEMORY 1024 to 4096",
    ),
    (
        [("set", (*C0, "resourceRequirements", 0, "value"), "0.5")],
        f"{TASK}.containers",
        r"VCPU 0.5 \+ 0.25 = 0.75.*one of 0.25, 0.5, 1, 2, 4, 8, 16",
    ),
    (
        [("set", (*C0, "logConfiguration", "logDriver"), "json-file")],
        f"{APP}.logConfiguration.logDriver",
        "Fargate supports only awslogs",
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
    ([("set", (*C0, "privileged"), True)], f"{APP}.privileged", "no privileged containers"),
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
    (
        [("set", (*C1, "environment", 0, "name"), "AWS_BATCH_JOB_ID")],
        f"{PIPE}.environment[0].name",
        "reserved for Batch",
    ),
    ([("set", ("tags",), {f"t{i}": "v" for i in range(50)})], "tags", "at most 49 tags"),
    ([("set", ("tags",), {"aws:owner": "me"})], 'tags["aws:owner"]', "reserved"),
    ([("set", ("tags",), {"k" * 129: "v"})], "tags key", "Batch accepts at most 128"),
    ([("set", (*C1, "command"), ["x" * 25000])], "(request)", r"found \d+ bytes.*24576"),
]


def _id(case: tuple) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", f"{case[1]}-{case[2]}")[:60].strip("-")


@pytest.mark.parametrize(("changes", "path", "match"), INVALID, ids=[_id(c) for c in INVALID])
def test_invalid_definitions_report_path_and_fix(changes, path, match):
    request = mutate(valid_definition(), *changes)

    with pytest.raises(JobDefinitionError) as info:
        validate_job_definition(request)

    at_path = [p for p in info.value.problems if p.startswith(f"{path}:") or p.startswith(path)]
    assert at_path, f"no problem at {path}: {info.value.problems}"
    assert any(re.search(match, problem) for problem in at_path), at_path
    assert all(re.search(r"\(found .*\); ", problem) for problem in info.value.problems)
    assert SECRET not in str(info.value)


def test_at_least_thirty_invalid_definitions_are_covered():
    assert len(INVALID) >= 30


def test_valid_definition_passes():
    validate_job_definition(valid_definition())


def test_every_problem_is_reported_at_once():
    request = mutate(
        valid_definition(),
        ("set", ("type",), "single"),
        ("del", (*T, "executionRoleArn")),
        ("set", (*C1, "dependsOn", 0, "condition"), "HEALTHY"),
    )

    with pytest.raises(JobDefinitionError, match="3 problems"):
        validate_job_definition(request)


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


def test_not_a_mapping_is_refused():
    with pytest.raises(JobDefinitionError, match=r"\(request\): must be a mapping"):
        validate_job_definition(["not", "a", "definition"])


def test_ec2_definition_is_not_held_to_fargate_rules():
    request = valid_definition()
    request["platformCapabilities"] = ["EC2"]
    task = _node(request, T)
    for field in (
        "executionRoleArn",
        "platformVersion",
        "networkConfiguration",
        "ephemeralStorage",
    ):
        del task[field]
    _node(request, C0)["resourceRequirements"] = [{"type": "GPU", "value": "1"}]

    validate_job_definition(request)


# -- lint ---------------------------------------------------------------------------------------


def test_lint_warns_about_ref_without_default():
    request = valid_definition()
    del request["parameters"]

    warnings = lint_job_definition(request)

    assert warnings == [
        f"{PIPE}.command[0]: Ref::EVENT_JSON has no default in parameters; every submit must "
        "pass parameters={'EVENT_JSON': ...}, or the container receives the literal text"
    ]


def test_lint_warns_about_ref_in_environment_and_twice_set_names_without_values():
    request = valid_definition()
    environment = _node(request, C1)["environment"]
    environment.append({"name": "API_TOKEN", "value": "Ref::TOKEN"})

    warnings = lint_job_definition(request)

    assert any(
        "API_TOKEN uses Ref::, which Batch replaces only inside command" in w for w in warnings
    )
    assert any("environment[1].name: API_TOKEN is set twice" in w for w in warnings)
    assert SECRET not in " ".join(warnings)


def test_lint_warns_when_platform_is_not_chosen():
    request = valid_definition()
    del request["platformCapabilities"]

    assert lint_job_definition(request)[0].startswith("platformCapabilities: not set")


def test_lint_of_a_clean_definition_is_empty():
    assert lint_job_definition(valid_definition()) == []


# -- property-based ---------------------------------------------------------------------------

JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.dates()
    | st.binary(max_size=4),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=3)
    ),
    max_leaves=8,
)
ENUMISH = st.sampled_from(
    [
        "START",
        "COMPLETE",
        "SUCCESS",
        "HEALTHY",
        "FARGATE",
        "EC2",
        "GPU",
        "VCPU",
        "MEMORY",
        "container",
        "multinode",
        "json-file",
        "awslogs",
        "",
        "0",
        "-1",
        "1e9",
        "NaN",
        "Ref::X",
    ]
)


def _paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            paths.extend(_paths(value, (*prefix, key)))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            paths.extend(_paths(value, (*prefix, index)))
    return paths


def _ecs_flavoured() -> dict[str, Any]:
    request = valid_definition()
    request["orchestrationType"] = "ECS"
    task = _node(request, T)
    task["fargatePlatformConfiguration"] = {"platformVersion": task.pop("platformVersion")}
    task["cpu"], task["memory"] = "1024", "2048"
    for container in task["containers"]:
        del container["resourceRequirements"]
    task["containers"][0]["portMappings"] = [{"containerPort": 8080}]
    task["containers"][0]["healthCheck"] = {
        "command": ["CMD-SHELL", "curl -fsS http://localhost:8080/health || exit 1"],
        "interval": 5,
    }
    task["containers"][1]["dependsOn"][0]["condition"] = "HEALTHY"
    return request


@st.composite
def mutated_definitions(draw: st.DrawFn) -> dict[str, Any]:
    document = draw(st.sampled_from([valid_definition, _ecs_flavoured]))()
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(_paths(document)))
        op = draw(st.sampled_from(["drop", "replace", "insert", "enum", "duplicate", "empty"]))
        node = _node(document, path)
        if op == "drop" and path:
            del _node(document, path[:-1])[path[-1]]
        elif op in ("replace", "enum") and path:
            value = draw(JSONISH if op == "replace" else ENUMISH)
            _node(document, path[:-1])[path[-1]] = value
        elif op == "insert" and isinstance(node, dict):
            node[draw(st.text(max_size=20))] = draw(JSONISH)
        elif op == "insert" and isinstance(node, list):
            node.append(draw(JSONISH))
        elif op == "duplicate" and isinstance(node, list) and node:
            node.append(copy.deepcopy(node[0]))
        elif op == "empty" and path:
            empty = type(node)() if isinstance(node, (dict, list, str)) else ""
            _node(document, path[:-1])[path[-1]] = empty
    return document


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_definitions())
def test_mutated_definitions_raise_nothing_but_job_definition_error(document):
    messages = []
    for check in (
        lambda: validate_job_definition(compile_job_definition(document).request),
        lambda: validate_job_definition(document),
    ):
        try:
            check()
        except JobDefinitionError as err:
            messages.append(str(err))
    lint_job_definition(document)

    assert all("problem" in message for message in messages)
    assert SECRET not in "".join(messages)


NAMES = st.lists(
    st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True), min_size=1, max_size=5, unique=True
)
ENV = st.lists(
    st.tuples(st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True), st.text(max_size=20)),
    max_size=3,
).map(lambda pairs: [{"name": n, "value": v} for n, v in pairs if not n.startswith("AWS_BATCH")])


@st.composite
def valid_ecs_definitions(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(NAMES)
    vcpu = draw(st.sampled_from(sorted(FARGATE_SIZES)))
    memory = draw(st.sampled_from(FARGATE_SIZES[vcpu]))
    essential = draw(st.lists(st.booleans(), min_size=len(names), max_size=len(names)))
    essential[draw(st.integers(0, len(names) - 1))] = True
    containers = []
    for index, name in enumerate(names):
        container: dict[str, Any] = {"name": name, "image": f"{name}:1", "environment": draw(ENV)}
        if draw(st.booleans()) or not essential[index]:
            container["essential"] = essential[index]
        earlier = names[:index]
        for target in draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []:
            target_essential = essential[names.index(target)]
            choices = ["START"] if target_essential else ["START", "COMPLETE", "SUCCESS"]
            condition = draw(st.sampled_from(choices))
            container.setdefault("dependsOn", []).append(
                {"containerName": target, "condition": condition}
            )
        containers.append(container)
    if len(names) > 1 and draw(st.booleans()):
        containers[0]["healthCheck"] = {"command": ["CMD", "curl", "-f", "http://localhost:1/h"]}
        containers[1]["dependsOn"] = [{"containerName": names[0], "condition": "HEALTHY"}]
    task = {
        "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
        "cpu": str(int(vcpu * 1024)),
        "memory": str(memory),
        "containers": containers,
    }
    return {
        "jobDefinitionName": draw(st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True)),
        "type": "container",
        "platformCapabilities": ["FARGATE"],
        "ecsProperties": {"taskProperties": [task]},
    }


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_ecs_definitions())
def test_valid_definitions_compile_and_pass(document):
    compiled = compile_job_definition(document)

    validate_job_definition(compiled.request)
    total = sum(
        Decimal(r["value"])
        for container in _node(compiled.request, T)["containers"]
        for r in container["resourceRequirements"]
        if r["type"] == "VCPU"
    )
    assert total * 1024 == int(_node(document, T)["cpu"])


# -- job names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("export-2024-01-01", "export-2024-01-01"),
        ("export 2024/01/01", "export-2024-01-01"),
        (
            "flights.export::manual__2024-01-01T00:00:00+00:00",
            "flights-export-manual__2024-01-01T00-00-00-00-00",
        ),
        ("__private", "private"),
        ("--é--x", "x"),
        ("Zürich", "Z-rich"),
    ],
    ids=[
        "valid",
        "spaces-and-slashes",
        "airflow-run-id",
        "leading-underscores",
        "leading-junk",
        "non-ascii",
    ],
)
def test_job_name_for(text, expected):
    assert job_name_for(text) == expected


def test_long_job_names_keep_a_hash_of_the_whole_text():
    text = "export-" + "x" * 200

    name = job_name_for(text)

    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    assert name == f"{('export-' + 'x' * 200)[:119]}-{digest}"
    assert len(name) == 128
    assert job_name_for(text + "y") != name


@pytest.mark.parametrize(
    "text", ["", "!!!", "---", "__"], ids=["empty", "punctuation", "hyphens", "underscores"]
)
def test_job_names_without_letters_or_digits_are_refused(text):
    with pytest.raises(SubmitRequestError, match="job_name: no letter or digit"):
        job_name_for(text)


@given(st.text(min_size=1, max_size=300))
def test_job_names_are_always_valid_or_refused(text):
    try:
        name = job_name_for(text)
    except SubmitRequestError:
        return
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", name)
    assert job_name_for(name) == name or len(name) == 128


# -- overrides, parameters, size ----------------------------------------------------------------


def test_overrides_become_batch_container_entries():
    entries = check_overrides(
        valid_definition(),
        {
            "data-pipeline": {
                "command": ["--date", "2024-01-01"],
                "environment": {"LOG_LEVEL": "debug"},
            },
            "main-app": {"environment": [{"name": "PORT", "value": "9090"}]},
        },
    )

    assert entries == [
        {
            "name": "data-pipeline",
            "command": ["--date", "2024-01-01"],
            "environment": [{"name": "LOG_LEVEL", "value": "debug"}],
        },
        {"name": "main-app", "environment": [{"name": "PORT", "value": "9090"}]},
    ]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            {"pipeline": {"command": []}},
            r"overrides\['pipeline'\]: .*use one of main-app, data-pipeline",
        ),
        (
            {"main-app": {"image": "x"}},
            r"overrides\['main-app'\]\.image: Batch overrides only command",
        ),
        ({"main-app": {"comand": []}}, "did you mean 'command'"),
        ({"main-app": {"command": "run"}}, r"\.command: must be a list of strings"),
        (
            {"main-app": {"environment": {"TOKEN": 42}}},
            r"\.environment\.TOKEN: values must be strings",
        ),
        ({"main-app": {"environment": {"AWS_BATCH_X": "1"}}}, "reserved for Batch"),
        ({"main-app": {"environment": "A=1"}}, r"\.environment: must be a mapping"),
        (
            {"main-app": {"resourceRequirements": [{"type": "CPU", "value": "1"}]}},
            r"\.resourceRequirements: must be a list of",
        ),
        (
            {"main-app": {"resourceRequirements": [{"type": "MEMORY", "value": "4096"}]}},
            r"overrides resourceRequirements: .*with 0.5 vCPU make the total MEMORY 1024 to 4096",
        ),
        ({"main-app": ["command"]}, r"overrides\['main-app'\]: must be a mapping of fields"),
    ],
    ids=[
        "unknown-container",
        "unknown-field",
        "misspelt-field",
        "command-string",
        "env-int",
        "env-reserved",
        "env-string",
        "requirement-type",
        "fargate-size",
        "not-a-mapping",
    ],
)
def test_bad_overrides_are_refused(overrides, match):
    with pytest.raises(SubmitRequestError, match=match):
        check_overrides(valid_definition(), overrides)


def test_override_errors_never_show_environment_values():
    with pytest.raises(SubmitRequestError) as info:
        check_overrides(valid_definition(), {"main-app": {"environment": {"A": 1, "B": ["x"]}}})

    assert "2 problems" in str(info.value)
    assert "['x']" not in str(info.value)


def test_parameters_with_default_or_value_pass():
    check_parameters(valid_definition(), {})
    request = valid_definition()
    del request["parameters"]
    check_parameters(request, {"EVENT_JSON": json.dumps({"date": "2024-01-01"})})


def test_missing_parameter_is_refused():
    request = valid_definition()
    del request["parameters"]

    with pytest.raises(
        SubmitRequestError,
        match=r"parameters\['EVENT_JSON'\]: missing; the command of data-pipeline",
    ):
        check_parameters(request, {})


def test_parameter_values_must_be_serialized_once():
    with pytest.raises(SubmitRequestError, match=r"json.dumps\(payload\), never str\(payload\)"):
        check_parameters(valid_definition(), {"EVENT_JSON": {"date": "2024-01-01"}})


def test_override_command_replaces_the_definitions_refs():
    request = valid_definition()
    del request["parameters"]
    overrides = check_overrides(request, {"data-pipeline": {"command": ["Ref::OTHER"]}})

    with pytest.raises(SubmitRequestError, match=r"parameters\['OTHER'\]"):
        check_parameters(request, {"EVENT_JSON": "{}"}, container_overrides=overrides)


def test_submit_request_under_the_limit_passes():
    check_submit_size({"jobName": "x", "parameters": {"EVENT_JSON": "x" * 30000}})


def test_submit_request_over_the_limit_names_size_limit_and_payload():
    request = {
        "jobName": "x",
        "jobQueue": "q",
        "parameters": {"EVENT_JSON": json.dumps({"rows": ["y" * 100] * 400})},
    }
    size = len(json.dumps(request).encode())

    with pytest.raises(
        SubmitRequestError, match=rf"found {size} bytes .* limit is 30720 bytes"
    ) as info:
        check_submit_size(request)

    assert "parameters.EVENT_JSON" in str(info.value)
    assert "shrink the payload" in str(info.value)


def test_unusual_values_do_not_break_the_size_check():
    check_submit_size({"jobName": "x", "when": datetime.date(2024, 1, 1)})
