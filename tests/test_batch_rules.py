"""Batch's own rules for ecsProperties and Fargate job definitions, beyond its model."""

from __future__ import annotations

import pytest

from airflow_sidecar_batch.validation import validate_job_definition
from tests.definitions import (
    APP,
    C0,
    C1,
    PIPE,
    TASK,
    T,
    _id,
    _node,
    assert_reported,
    mutate,
    valid_definition,
)

REQ = {"type": "VCPU", "value": "0.25"}

RULE_CASES = [
    # (changes, path, what the message says)
    ([("set", ("jobDefinitionName",), "daily export!")], "jobDefinitionName", "up to 128 letters"),
    ([("set", ("jobDefinitionName",), "x" * 129)], "jobDefinitionName", "129 characters"),
    ([("set", ("retryStrategy", "attempts"), 11)], "retryStrategy.attempts", "from 1 to 10"),
    ([("set", ("timeout", "attemptDurationSeconds"), 30)], "timeout.attemptDurationSeconds", "60"),
    ([("set", ("schedulingPriority",), 10000)], "schedulingPriority", "from 0 to 9999"),
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
    ([("set", (*T, "containers"), [])], f"{TASK}.containers", "at least one container"),
    (
        [("set", (*T, "containers"), [{"name": f"c{i}", "image": "x"} for i in range(11)])],
        f"{TASK}.containers",
        r"at most 10 containers \(found 11\)",
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
    ([("set", (*C0, "privileged"), True)], f"{APP}.privileged", "no privileged containers"),
    (
        [("set", (*C1, "environment", 0, "name"), "AWS_BATCH_JOB_ID")],
        f"{PIPE}.environment[0].name",
        "reserved for Batch",
    ),
    ([("set", ("tags",), {f"t{i}": "v" for i in range(50)})], "tags", "at most 49 tags"),
    ([("set", ("tags",), {"aws:owner": "me"})], 'tags["aws:owner"]', "reserved"),
    ([("set", (*C1, "command"), ["x" * 25000])], "(request)", r"found \d+ bytes.*24576"),
]


@pytest.mark.parametrize(("changes", "path", "match"), RULE_CASES, ids=[_id(c) for c in RULE_CASES])
def test_invalid_definitions_report_path_and_fix(changes, path, match):
    assert_reported(mutate(valid_definition(), *changes), path, match)


def test_at_least_thirty_invalid_definitions_are_covered():
    assert len(RULE_CASES) >= 30


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
