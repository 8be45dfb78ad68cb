"""The entry points: validate_job_definition as a whole, and lint_job_definition."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_sidecar_batch.batch_rules import FARGATE_SIZES
from airflow_sidecar_batch.compiler import compile_job_definition
from airflow_sidecar_batch.exceptions import JobDefinitionError
from airflow_sidecar_batch.validation import lint_job_definition, validate_job_definition
from tests.definitions import C1, PIPE, SECRET, T, _node, mutate, valid_definition


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


def test_not_a_mapping_is_refused():
    with pytest.raises(JobDefinitionError, match=r"\(request\): must be a mapping"):
        validate_job_definition(["not", "a", "definition"])


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
