"""Check a RegisterJobDefinition request against botocore's own Batch model.

Shapes, types, enums, bounds, required and unknown fields all come from the model, so a newer
botocore brings new fields without code changes. Each problem is appended to ``problems`` in
the form ``<path>: <what is wrong> (found <value>); <the fix>``.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

import botocore.session

from airflow_sidecar_batch.request_parts import _shown

#: ECS task-definition fields people copy into Batch requests, and what Batch wants instead.
_ECS_HINTS = {
    "cpu": "set VCPU per container in resourceRequirements, e.g. "
    '[{"type": "VCPU", "value": "0.5"}] (prepare_job_definition converts task-level cpu)',
    "memory": "set MEMORY (MiB) per container in resourceRequirements, e.g. "
    '[{"type": "MEMORY", "value": "1024"}] (prepare_job_definition converts task-level memory)',
    "memoryReservation": 'use resourceRequirements [{"type": "MEMORY", "value": "..."}]',
    "portMappings": "remove it: the containers share the task's network namespace, so the "
    "others reach this one on localhost",
    "healthCheck": "remove it and depend on this container with START; the dependent waits for "
    "the URL itself (prepare_job_definition converts a curl/wget health check)",
    "orchestrationType": "remove it: ecsProperties already means ECS orchestration",
    "fargatePlatformConfiguration": "write platformVersion on the task instead",
    "containerDefinitions": "write the containers under ecsProperties.taskProperties[0].containers",
    "family": "use jobDefinitionName",
    "requiresCompatibilities": 'use platformCapabilities: ["FARGATE"]',
    "links": "remove it: containers of one task reach each other on localhost",
}


@functools.cache
def _register_shape() -> Any:
    model = botocore.session.get_session().get_service_model("batch")
    return model.operation_model("RegisterJobDefinition").input_shape


def _check_shape(value: Any, shape: Any, path: str, problems: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure":
        _check_structure(value, shape, path, problems)
    elif kind == "list":
        if not isinstance(value, list):
            problems.append(_wrong_type(path, value, "a list", "wrap the value in [ ]"))
            return
        _check_bounds(path, len(value), shape.metadata, "entries", problems)
        for index, item in enumerate(value):
            _check_shape(item, shape.member, f"{path}[{index}]", problems)
    elif kind == "map":
        if not isinstance(value, dict):
            problems.append(_wrong_type(path, value, "a mapping", "write {key: value, ...}"))
            return
        _check_bounds(path, len(value), shape.metadata, "entries", problems)
        for key, item in value.items():
            _check_shape(key, shape.key, f"{path} key {_shown(key)}", problems)
            _check_shape(item, shape.value, f'{path}["{key}"]', problems)
    else:
        _check_scalar(value, shape, path, problems)


def _check_structure(value: Any, shape: Any, path: str, problems: list[str]) -> None:
    if not isinstance(value, dict):
        fix = f"write a mapping with fields from {shape.name}"
        problems.append(_wrong_type(path, value, "a mapping", fix))
        return
    prefix = f"{path}." if path else ""
    for name in shape.required_members:
        if name not in value:
            problems.append(
                f"{prefix}{name}: missing (found nothing); add it, {shape.name} requires it"
            )
    for key, item in value.items():
        if not isinstance(key, str):
            problems.append(
                f"{prefix}{_shown(key)}: field names must be strings (found {_shown(key)}); "
                "quote the name"
            )
        elif key in shape.members:
            _check_shape(item, shape.members[key], prefix + key, problems)
        else:
            fix = _unknown_fix(key, shape)
            problems.append(f"{prefix}{key}: unknown field (found {key!r}); {fix}")


def _unknown_fix(key: str, shape: Any) -> str:
    valid = list(shape.members)
    folded = {name.lower(): name for name in valid}
    if key.lower() in folded:
        return f"did you mean {folded[key.lower()]!r}? field names are case-sensitive"
    if key in _ECS_HINTS:
        return f"{shape.name} has no {key}: {_ECS_HINTS[key]}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"remove it; {shape.name} takes {', '.join(sorted(valid))}"


def _check_scalar(value: Any, shape: Any, path: str, problems: list[str]) -> None:
    kind = shape.type_name
    if kind == "string":
        if not isinstance(value, str):
            fix = f'quote it: "{value}"' if isinstance(value, (int, float)) else "write a string"
            problems.append(_wrong_type(path, value, "a string", fix))
            return
        enum = list(getattr(shape, "enum", None) or [])
        if enum and value not in enum:
            folded = {name.lower(): name for name in enum}
            fix = (
                f"did you mean {folded[value.lower()]!r}?"
                if value.lower() in folded
                else f"use one of {', '.join(enum)}"
            )
            problems.append(f"{path}: not an accepted value (found {_shown(value, path)}); {fix}")
        _check_bounds(path, len(value), shape.metadata, "characters", problems)
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            fix = f"write {value} without quotes" if _is_int_text(value) else "write a whole number"
            problems.append(_wrong_type(path, value, "a whole number", fix))
            return
        _check_bounds(path, value, shape.metadata, "", problems)
    elif kind == "boolean":
        if not isinstance(value, bool):
            fix = (
                f"write {value.lower()} without quotes"
                if isinstance(value, str) and value.lower() in ("true", "false")
                else "write true or false"
            )
            problems.append(_wrong_type(path, value, "true or false", fix))
    elif kind in ("double", "float") and (
        isinstance(value, bool) or not isinstance(value, (int, float))
    ):
        problems.append(_wrong_type(path, value, "a number", "write a number"))


def _check_bounds(path: str, size: int, metadata: dict, unit: str, problems: list[str]) -> None:
    low, high = metadata.get("min"), metadata.get("max")
    found = f"{size} {unit}".rstrip()
    if low is not None and size < low:
        problems.append(f"{path}: too small (found {found}); Batch requires at least {low}")
    if high is not None and size > high:
        problems.append(f"{path}: too large (found {found}); Batch accepts at most {high}")


def _wrong_type(path: str, value: Any, expected: str, fix: str) -> str:
    return f"{path or '(request)'}: must be {expected} (found {_shown(value, path)}); {fix}"


def _is_int_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()
