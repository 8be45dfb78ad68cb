"""A sidecar definition Batch accepts, and the means to break it, for the validation tests."""

from __future__ import annotations

import re
from typing import Any

import pytest

from airflow_sidecar_batch.exceptions import JobDefinitionError
from airflow_sidecar_batch.validation import validate_job_definition

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


def _id(case: tuple) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", f"{case[1]}-{case[2]}")[:60].strip("-")


def assert_reported(request: dict[str, Any], path: str, match: str) -> None:
    """Validate ``request``; expect a problem at ``path`` whose message matches ``match``."""
    with pytest.raises(JobDefinitionError) as info:
        validate_job_definition(request)

    at_path = [p for p in info.value.problems if p.startswith(f"{path}:") or p.startswith(path)]
    assert at_path, f"no problem at {path}: {info.value.problems}"
    assert any(re.search(match, problem) for problem in at_path), at_path
    assert all(re.search(r"\(found .*\); ", problem) for problem in info.value.problems)
    assert SECRET not in str(info.value)
