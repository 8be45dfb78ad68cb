"""Validate RegisterJobDefinition and SubmitJob requests before any AWS call.

Every problem is collected and reported at once, one line each, in the form
``<path>: <what is wrong> (found <value>); <the fix>``. Shapes, types, enums and required fields
come from botocore's own Batch model (read in :mod:`~airflow_sidecar_batch.model_check`), so a
newer botocore brings new fields without code changes; the rules Batch enforces on top of that
model (Fargate sizes, essential containers, ``dependsOn``) are written out in
:mod:`~airflow_sidecar_batch.batch_rules`, and the SubmitJob checks in
:mod:`~airflow_sidecar_batch.submit_checks`. Their entry points stay importable from here.

Values of ``environment`` entries are never shown, only their names and types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_sidecar_batch.batch_rules import (
    DEFINITION_SIZE_LIMIT,
    FARGATE_SIZES,
    _size_rule,
    _task_rules,
    _top_level_rules,
    fargate_size_fix,
)
from airflow_sidecar_batch.exceptions import JobDefinitionError
from airflow_sidecar_batch.model_check import _check_shape, _register_shape
from airflow_sidecar_batch.request_parts import _REF, _containers, _dict, _list, _shown, _tasks
from airflow_sidecar_batch.submit_checks import (
    SUBMIT_SIZE_LIMIT,
    check_overrides,
    check_parameters,
    check_submit_size,
    job_name_for,
)

__all__ = [
    "DEFINITION_SIZE_LIMIT",
    "FARGATE_SIZES",
    "SUBMIT_SIZE_LIMIT",
    "check_overrides",
    "check_parameters",
    "check_submit_size",
    "fargate_size_fix",
    "job_name_for",
    "lint_job_definition",
    "validate_job_definition",
]


def validate_job_definition(request: Mapping[str, Any]) -> None:
    """Check a RegisterJobDefinition request against botocore's model and Batch's own rules.

    :param request: the request, as it will be passed to ``register_job_definition``.
    :raises JobDefinitionError: listing every problem found, each with its path and fix.
    """
    if not isinstance(request, Mapping):
        raise JobDefinitionError(
            f"(request): must be a mapping of RegisterJobDefinition fields "
            f"(found {_shown(request)}); write jobDefinitionName, type, ecsProperties, ..."
        )
    request = dict(request)
    problems: list[str] = []
    _check_shape(request, _register_shape(), "", problems)
    problems.extend(_top_level_rules(request))
    for index, task in enumerate(_tasks(request)):
        problems.extend(_task_rules(task, f"ecsProperties.taskProperties[{index}]", request))
    problems.extend(_size_rule(request))
    if problems:
        raise JobDefinitionError(list(dict.fromkeys(problems)))


def lint_job_definition(request: Mapping[str, Any]) -> list[str]:
    """Return warnings about a request Batch would accept but that is likely a mistake.

    :param request: a RegisterJobDefinition request; it need not be valid.
    """
    if not isinstance(request, Mapping):
        return []
    warnings = []
    if "platformCapabilities" not in request:
        warnings.append(
            'platformCapabilities: not set, so Batch runs the job on EC2; add ["FARGATE"] '
            "to run it on Fargate"
        )
    defaults = _dict(request.get("parameters"))
    for path, container in _containers(request):
        for position, token in enumerate(_list(container.get("command"))):
            for name in _REF.findall(token) if isinstance(token, str) else ():
                if name not in defaults:
                    warnings.append(
                        f"{path}.command[{position}]: Ref::{name} has no default in parameters; "
                        f"every submit must pass parameters={{'{name}': ...}}, or the container "
                        "receives the literal text"
                    )
        seen: set[str] = set()
        for position, pair in enumerate(_list(container.get("environment"))):
            name, value = _dict(pair).get("name"), _dict(pair).get("value")
            if isinstance(value, str) and "Ref::" in value:
                warnings.append(
                    f"{path}.environment[{position}]: the value of {name} uses Ref::, which "
                    "Batch replaces only inside command; pass it through the command instead"
                )
            if isinstance(name, str) and name in seen:
                warnings.append(
                    f"{path}.environment[{position}].name: {name} is set twice; keep one entry"
                )
            if isinstance(name, str):
                seen.add(name)
    return warnings
