"""Validate RegisterJobDefinition and SubmitJob requests before any AWS call.

Every problem is collected and reported at once, one line each, in the form
``<path>: <what is wrong> (found <value>); <the fix>``. Shapes, types, enums and required fields
come from botocore's own Batch model, so a newer botocore brings new fields without code changes;
the rules Batch enforces on top of that model (Fargate sizes, essential containers, ``dependsOn``)
are written out here.

Values of ``environment`` entries are never shown, only their names and types.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
from collections.abc import Generator, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import botocore.session

from airflow_sidecar_batch.exceptions import JobDefinitionError, SubmitRequestError

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

#: Batch refuses a RegisterJobDefinition request larger than this, in bytes of serialized JSON.
DEFINITION_SIZE_LIMIT = 24 * 1024
#: Batch refuses a SubmitJob request larger than this, in bytes of serialized JSON.
SUBMIT_SIZE_LIMIT = 30 * 1024

#: Fargate task sizes: total vCPU over all containers -> the total MEMORY values (MiB) allowed.
FARGATE_SIZES: dict[Decimal, tuple[int, ...]] = {
    Decimal("0.25"): (512, 1024, 2048),
    Decimal("0.5"): tuple(range(1024, 4097, 1024)),
    Decimal("1"): tuple(range(2048, 8193, 1024)),
    Decimal("2"): tuple(range(4096, 16385, 1024)),
    Decimal("4"): tuple(range(8192, 30721, 1024)),
    Decimal("8"): tuple(range(16384, 61441, 4096)),
    Decimal("16"): tuple(range(32768, 122881, 8192)),
}

#: ``dependsOn`` conditions Batch accepts; the model types the field as a plain string.
DEPENDENCY_CONDITIONS = ("START", "COMPLETE", "SUCCESS")
#: Fields a SubmitJob container override may carry.
OVERRIDE_FIELDS = ("command", "environment", "resourceRequirements")
#: ensure adds one tag (name plus a 64-hex digest) after validation; keep room for it.
_TAG_RESERVE = 100

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_CONTAINER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_INVALID_NAME_RUN = re.compile(r"[^A-Za-z0-9_-]+")
_REF = re.compile(r"Ref::([A-Za-z0-9_-]+)")
_FARGATE_LOG_DRIVERS = ("awslogs", "splunk", "awsfirelens")
_RESOURCE_TYPES = ("VCPU", "MEMORY", "GPU")

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


# -- RegisterJobDefinition ------------------------------------------------------------------------


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


def _top_level_rules(request: Mapping[str, Any]) -> Iterator[str]:
    name = request.get("jobDefinitionName")
    if isinstance(name, str) and not _NAME.match(name):
        cleaned = _INVALID_NAME_RUN.sub("-", name)[:128] or "my-job-definition"
        yield (
            f"jobDefinitionName: up to 128 letters, digits, hyphens and underscores "
            f"(found {name!r}, {len(name)} characters); write e.g. {cleaned!r}"
        )

    kinds = [
        key for key in ("ecsProperties", "containerProperties", "eksProperties") if key in request
    ]
    job_type = request.get("type")
    fargate = _is_fargate(request)
    if job_type == "container" and not kinds:
        yield (
            "ecsProperties: a container job needs one of containerProperties, ecsProperties or "
            "eksProperties (found none); add ecsProperties.taskProperties[0].containers"
        )
    for extra in kinds[1:]:
        yield f"{extra}: cannot be combined with {kinds[0]} (found both); keep one of them"
    if job_type == "multinode" and kinds:
        yield (
            f"{kinds[0]}: a multinode job puts it under nodeProperties.nodeRangeProperties[] "
            f"(found it at the top level); use type container for a single-node job"
        )
    tasks = _dict(request.get("ecsProperties")).get("taskProperties")
    if job_type == "container" and isinstance(tasks, list) and len(tasks) != 1:
        yield (
            f"ecsProperties.taskProperties: a single-node job has exactly one task (found "
            f"{len(tasks) or 'none'}); put every container in taskProperties[0].containers"
        )
    if job_type == "multinode" and fargate:
        yield (
            "type: Fargate does not run multinode jobs (found 'multinode' with FARGATE); "
            "use type container"
        )
    if not fargate and any(_fargate_only_fields(task) for task in _tasks(request)):
        found = ", ".join(
            sorted({f for task in _tasks(request) for f in _fargate_only_fields(task)})
        )
        yield (
            f"platformCapabilities: the task uses Fargate settings but the job does not ask for "
            f"Fargate (found {_shown(request.get('platformCapabilities'))} with {found}); "
            'write platformCapabilities: ["FARGATE"]'
        )

    yield from _range_rule("schedulingPriority", request.get("schedulingPriority"), 0, 9999)
    retry = _dict(request.get("retryStrategy"))
    yield from _range_rule("retryStrategy.attempts", retry.get("attempts"), 1, 10)
    timeout = _dict(request.get("timeout"))
    yield from _range_rule(
        "timeout.attemptDurationSeconds", timeout.get("attemptDurationSeconds"), 60, None
    )
    tags = _dict(request.get("tags"))
    if len(tags) > 49:
        yield (
            f"tags: at most 49 tags (found {len(tags)}); ensure adds one more, "
            "sidecar-batch:fingerprint, and Batch allows 50"
        )
    for key in tags:
        if isinstance(key, str) and key.lower().startswith("aws:"):
            yield f'tags["{key}"]: the aws: prefix is reserved (found {key!r}); rename the tag'


def _range_rule(path: str, value: Any, low: int, high: int | None) -> Iterator[str]:
    if isinstance(value, bool) or not isinstance(value, int):
        return
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        yield f"{path}: out of range (found {value}); Batch accepts {bounds}"


def _task_rules(task: dict, path: str, request: Mapping[str, Any]) -> Iterator[str]:
    containers = [
        (i, c) for i, c in enumerate(_list(task.get("containers"))) if isinstance(c, dict)
    ]
    if "containers" in task and not containers:
        yield f"{path}.containers: needs at least one container (found none); add one"
        return
    if len(containers) > 10:
        yield f"{path}.containers: at most 10 containers (found {len(containers)}); remove some"

    yield from _name_rules(containers, path)
    # An omitted essential is true: Batch's default.
    flags = [c.get("essential", True) is not False for _, c in containers]
    essential = {
        name: flag
        for (_, c), flag in zip(containers, flags, strict=True)
        if (name := _name(c)) is not None
    }
    if containers and not any(flags):
        yield (
            f"{path}.containers: no essential container (found essential: false on all "
            f"{len(containers)}); mark the container whose exit decides the job essential: true"
        )
    yield from _dependency_rules(containers, path, essential)
    for index, container in containers:
        for position, pair in enumerate(_list(container.get("environment"))):
            name = _dict(pair).get("name")
            if isinstance(name, str) and name.startswith("AWS_BATCH"):
                yield (
                    f"{path}.containers[{index}].environment[{position}].name: the AWS_BATCH "
                    f"prefix is reserved for Batch (found {name!r}); rename the variable"
                )
    if request.get("type") != "multinode" and _is_fargate(request):
        yield from _fargate_rules(task, containers, path)


def _name_rules(containers: list[tuple[int, dict]], path: str) -> Iterator[str]:
    seen: dict[str, int] = {}
    for index, container in containers:
        name = container.get("name")
        where = f"{path}.containers[{index}].name"
        if name is None and len(containers) > 1:
            yield (
                f"{where}: missing (found nothing); name every container of a multi-container "
                "job: dependsOn, overrides and log streams refer to containers by name"
            )
        elif isinstance(name, str) and not _CONTAINER_NAME.match(name):
            yield (
                f"{where}: up to 255 letters, digits, hyphens and underscores (found {name!r}); "
                f"write e.g. {_INVALID_NAME_RUN.sub('-', name)[:255] or 'app'!r}"
            )
        if isinstance(name, str) and name in seen:
            yield (
                f"{where}: container names must be unique (found {name!r}, also at "
                f"containers[{seen[name]}]); rename one of them"
            )
        elif isinstance(name, str):
            seen[name] = index


def _dependency_rules(
    containers: list[tuple[int, dict]], path: str, essential: dict[Any, bool]
) -> Iterator[str]:
    names = {name for _, c in containers if (name := _name(c)) is not None}
    edges: dict[str, list[tuple[str, str]]] = {}
    for index, container in containers:
        for position, dependency in enumerate(_list(container.get("dependsOn"))):
            if not isinstance(dependency, dict):
                continue
            where = f"{path}.containers[{index}].dependsOn[{position}]"
            target, condition = dependency.get("containerName"), dependency.get("condition")
            if target is None:
                yield (
                    f"{where}.containerName: missing (found nothing); "
                    "name the container to wait for"
                )
            elif isinstance(target, str) and target not in names:
                known = ", ".join(sorted(names))
                yield (
                    f"{where}.containerName: no container of that name (found {target!r}); "
                    f"use one of {known}"
                )
            elif isinstance(target, str) and isinstance(container.get("name"), str):
                edges.setdefault(container["name"], []).append((target, where))
            if condition is None:
                yield f"{where}.condition: missing (found nothing); use START, COMPLETE or SUCCESS"
            elif condition == "HEALTHY":
                yield (
                    f"{where}.condition: Batch has no HEALTHY condition (found 'HEALTHY'); use "
                    "START and let the dependent wait for the URL itself (prepare_job_definition "
                    "does this when the target has a curl or wget healthCheck)"
                )
            elif isinstance(condition, str) and condition not in DEPENDENCY_CONDITIONS:
                yield (
                    f"{where}.condition: not a Batch condition (found {condition!r}); "
                    "use START, COMPLETE or SUCCESS"
                )
            elif condition in ("COMPLETE", "SUCCESS") and essential.get(str(target)):
                yield (
                    f"{where}.condition: {condition} cannot target an essential container "
                    f"(found {target!r}, essential); mark {target} essential: false or use START"
                )
    yield from _cycle_rules(edges)


def _cycle_rules(edges: dict[str, list[tuple[str, str]]]) -> Iterator[str]:
    """Yield one problem per dependency cycle, at the first edge of the cycle."""
    remaining = set(edges)
    _prune(edges, remaining)
    while remaining:
        node, trail = min(remaining), []
        while node not in trail:
            trail.append(node)
            node = min(target for target, _ in edges[node] if target in remaining)
        cycle = trail[trail.index(node) :]
        following = cycle[1] if len(cycle) > 1 else cycle[0]
        where = next(w for target, w in edges[cycle[0]] if target == following)
        shown = " -> ".join([*cycle, cycle[0]])
        yield (
            f"{where}.containerName: dependsOn forms a cycle (found {shown}); "
            "remove one of these dependencies"
        )
        remaining.difference_update(cycle)
        _prune(edges, remaining)


def _prune(edges: dict[str, list[tuple[str, str]]], remaining: set[str]) -> None:
    """Drop the containers that cannot be on a cycle: those waiting on nothing still remaining."""
    changed = True
    while changed:
        changed = False
        for node in sorted(remaining):
            if not any(target in remaining for target, _ in edges.get(node, [])):
                remaining.discard(node)
                changed = True


def _fargate_rules(task: dict, containers: list[tuple[int, dict]], path: str) -> Iterator[str]:
    role = task.get("executionRoleArn")
    if role is None:
        yield (
            f"{path}.executionRoleArn: missing (found nothing); Fargate jobs always need an "
            "execution role, e.g. arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
        )
    elif isinstance(role, str) and not (role.startswith("arn:") and ":role/" in role):
        yield (
            f"{path}.executionRoleArn: not an IAM role ARN (found {role!r}); "
            "write arn:aws:iam::<account>:role/<name>"
        )
    storage = _dict(task.get("ephemeralStorage")).get("sizeInGiB")
    yield from _range_rule(f"{path}.ephemeralStorage.sizeInGiB", storage, 21, 200)

    totals: dict[str, list[Decimal]] = {"VCPU": [], "MEMORY": []}
    complete = True
    for index, container in containers:
        where = f"{path}.containers[{index}]"
        driver = _dict(container.get("logConfiguration")).get("logDriver")
        if isinstance(driver, str) and driver not in _FARGATE_LOG_DRIVERS:
            yield (
                f"{where}.logConfiguration.logDriver: Fargate supports only "
                f"{', '.join(_FARGATE_LOG_DRIVERS)} (found {driver!r}); use awslogs"
            )
        if container.get("privileged") is True:
            yield (
                f"{where}.privileged: Fargate runs no privileged containers (found true); remove it"
            )
        found = yield from _requirement_rules(container, where)
        for kind in totals:
            if kind in found:
                totals[kind].append(found[kind])
            else:
                complete = False
    if complete and containers:
        yield from _fargate_size_rule(totals, f"{path}.containers")


def _requirement_rules(container: dict, where: str) -> Generator[str, None, dict[str, Decimal]]:
    """Yield problems of one container's requirements; return the parsed VCPU and MEMORY."""
    found: dict[str, Decimal] = {}
    requirements = container.get("resourceRequirements")
    declared = {
        kind for r in _list(requirements) if (kind := _dict(r).get("type")) in _RESOURCE_TYPES
    }
    for position, requirement in enumerate(_list(requirements)):
        kind, raw = _dict(requirement).get("type"), _dict(requirement).get("value")
        at = f"{where}.resourceRequirements[{position}]"
        if kind == "GPU":
            yield f"{at}.type: Fargate has no GPUs (found 'GPU'); remove it or run on EC2"
        elif kind in ("VCPU", "MEMORY") and kind in found:
            yield f"{at}.type: {kind} is given twice (found a second {kind}); keep one"
        elif kind in ("VCPU", "MEMORY") and isinstance(raw, str):
            amount = _amount(raw)
            if amount is None or amount <= 0 or (kind == "MEMORY" and amount != int(amount)):
                unit = (
                    "a positive number of vCPU, e.g. '0.5'"
                    if kind == "VCPU"
                    else ("a whole number of MiB, e.g. '1024'")
                )
                yield f"{at}.value: {kind} must be {unit} (found {raw!r}); fix the value"
            else:
                found[kind] = amount
    missing = [kind for kind in ("VCPU", "MEMORY") if kind not in declared]
    if missing and (isinstance(requirements, list) or requirements is None):
        already = ", ".join(sorted(declared)) or "none"
        example = ", ".join(
            f'{{"type": "{kind}", "value": "{"0.5" if kind == "VCPU" else "1024"}"}}'
            for kind in missing
        )
        yield (
            f"{where}.resourceRequirements: Fargate needs VCPU and MEMORY on every "
            f"container (found {already}); add {example}"
        )
    return found


def fargate_size_fix(vcpu: Decimal, memory: Decimal | int | None = None) -> str | None:
    """Say how to reach a Fargate size from these totals, or return None when they are one.

    :param vcpu: the total vCPU of the task.
    :param memory: the total MEMORY in MiB; None checks the vCPU alone.
    """
    if vcpu not in FARGATE_SIZES:
        return f"make the total vCPU one of {', '.join(_fmt(size) for size in FARGATE_SIZES)}"
    if memory is not None and memory not in FARGATE_SIZES[vcpu]:
        sizes = FARGATE_SIZES[vcpu]
        steps = (
            " or ".join(str(size) for size in sizes)
            if len(sizes) <= 3
            else f"{sizes[0]} to {sizes[-1]} in steps of {sizes[1] - sizes[0]}"
        )
        return f"with {_fmt(vcpu)} vCPU make the total MEMORY {steps} MiB"
    return None


def _fargate_size_rule(totals: dict[str, list[Decimal]], path: str) -> Iterator[str]:
    vcpu, memory = sum(totals["VCPU"], Decimal(0)), sum(totals["MEMORY"], Decimal(0))
    fix = fargate_size_fix(vcpu, memory)
    if fix:
        yield (
            f"{path}: the containers' VCPU and MEMORY must add up to a Fargate size (found "
            f"VCPU {' + '.join(_fmt(v) for v in totals['VCPU'])} = {_fmt(vcpu)}, "
            f"MEMORY {' + '.join(_fmt(m) for m in totals['MEMORY'])} = {_fmt(memory)}); {fix}"
        )


def _size_rule(request: Mapping[str, Any]) -> Iterator[str]:
    size = len(json.dumps(request, default=str).encode("utf-8")) + _TAG_RESERVE
    if size > DEFINITION_SIZE_LIMIT:
        yield (
            f"(request): too large for Batch (found {size} bytes serialized, including "
            f"{_TAG_RESERVE} for the fingerprint tag); keep it under {DEFINITION_SIZE_LIMIT} "
            "bytes (24 KiB): move long commands and many environment variables into the image"
        )


# -- SubmitJob --------------------------------------------------------------------------------


def job_name_for(text: str) -> str:
    """Turn a rendered job name into one Batch accepts, by a fixed rule.

    Every run of characters other than letters, digits, ``-`` and ``_`` becomes one ``-``;
    leading characters that are not letters or digits are dropped; a name longer than 128
    characters keeps its first 119, then ``-`` and the first 8 hex digits of the SHA-256 of the
    whole original text, so distinct long names stay distinct.

    :param text: the rendered name.
    :raises SubmitRequestError: when nothing usable is left.
    """
    name = _INVALID_NAME_RUN.sub("-", str(text)).lstrip("-_")
    if not name:
        raise SubmitRequestError(
            f"job_name: no letter or digit to build a job name from (found {str(text)[:80]!r}); "
            "use a name that contains letters or digits, e.g. 'export-{{ ds_nodash }}'"
        )
    if len(name) > 128:
        digest = hashlib.sha256(str(text).encode("utf-8")).hexdigest()[:8]
        name = f"{name[:119]}-{digest}"
    return name


def check_overrides(
    definition_request: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Turn per-container overrides into ``ecsPropertiesOverride.taskProperties[0].containers``.

    :param definition_request: the RegisterJobDefinition request the job is submitted against.
    :param overrides: container name -> ``command`` (list of strings), ``environment`` (a
        mapping of names to strings, or Batch's ``[{"name", "value"}]``) and/or
        ``resourceRequirements``; nothing else.
    :raises SubmitRequestError: naming every unknown container or field and every bad value.
    """
    if not isinstance(overrides, Mapping):
        raise _submit_error(
            [
                f"overrides: must be a mapping of container name to fields (found "
                f"{type(overrides).__name__}); write {{'data-pipeline': {{'command': [...]}}}}"
            ]
        )
    known = [name for _, c in _containers(definition_request) if (name := _name(c)) is not None]
    problems: list[str] = []
    entries: list[dict[str, Any]] = []
    for name, fields in overrides.items():
        path = f"overrides[{name!r}]"
        if name not in known:
            problems.append(
                f"{path}: the job definition has no container of that name (found {name!r}); "
                f"use one of {', '.join(known) or '(none: the definition names no containers)'}"
            )
        if not isinstance(fields, Mapping):
            problems.append(
                f"{path}: must be a mapping of fields (found {type(fields).__name__}); write "
                "{'command': [...], 'environment': {...}, 'resourceRequirements': [...]}"
            )
            continue
        entry: dict[str, Any] = {"name": name}
        for field, value in fields.items():
            converted = _override_field(f"{path}.{field}", field, value, problems)
            if converted is not None:
                entry[field] = converted
        entries.append(entry)
    if not problems:
        problems.extend(_override_size_rule(definition_request, entries))
    if problems:
        raise _submit_error(problems)
    return entries


def _override_field(path: str, field: Any, value: Any, problems: list[str]) -> Any:
    if field == "command":
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            problems.append(
                f"{path}: must be a list of strings (found {type(value).__name__}); "
                'write ["--date", "{{ ds }}"]'
            )
            return None
        return list(value)
    if field == "environment":
        return _override_environment(path, value, problems)
    if field == "resourceRequirements":
        good = isinstance(value, list) and all(
            isinstance(r, Mapping)
            and set(r) == {"type", "value"}
            and r["type"] in ("VCPU", "MEMORY", "GPU")
            and isinstance(r["value"], str)
            for r in value
        )
        if not good:
            problems.append(
                f"{path}: must be a list of {{'type': VCPU|MEMORY|GPU, 'value': '<string>'}} "
                f"(found {_shown(value)}); write [{{'type': 'MEMORY', 'value': '2048'}}]"
            )
            return None
        return [dict(r) for r in value]
    close = difflib.get_close_matches(str(field), OVERRIDE_FIELDS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    problems.append(
        f"{path}: Batch overrides only {', '.join(OVERRIDE_FIELDS)} per container "
        f"(found {field!r}); {hint}set anything else in the job definition"
    )
    return None


def _override_environment(path: str, value: Any, problems: list[str]) -> Any:
    if isinstance(value, Mapping):
        pairs = [(name, item) for name, item in value.items()]
    elif isinstance(value, list) and all(
        isinstance(p, Mapping) and set(p) <= {"name", "value"} and "name" in p for p in value
    ):
        pairs = [(p["name"], p.get("value")) for p in value]
    else:
        problems.append(
            f"{path}: must be a mapping of names to strings or a list of "
            f"{{'name', 'value'}} (found {type(value).__name__}); write {{'LOG_LEVEL': 'info'}}"
        )
        return None
    result = []
    for name, item in pairs:
        if not isinstance(name, str) or not name:
            problems.append(
                f"{path}: variable names must be non-empty strings (found {_shown(name)}); "
                "fix the name"
            )
        elif name.startswith("AWS_BATCH"):
            problems.append(
                f"{path}.{name}: the AWS_BATCH prefix is reserved for Batch (found {name!r}); "
                "rename the variable"
            )
        elif not isinstance(item, str):
            # The value itself is never shown: environment values may be secrets.
            problems.append(
                f"{path}.{name}: values must be strings (found {type(item).__name__}); "
                "convert it to a string, e.g. with json.dumps"
            )
        else:
            result.append({"name": name, "value": item})
    return result


def _override_size_rule(
    definition_request: Mapping[str, Any], entries: list[dict[str, Any]]
) -> Iterator[str]:
    """Check the Fargate size the overrides leave, when any of them changes VCPU or MEMORY."""
    if not _is_fargate(definition_request) or not any(
        "resourceRequirements" in entry for entry in entries
    ):
        return
    by_name = {entry["name"]: entry for entry in entries}
    totals: dict[str, list[Decimal]] = {"VCPU": [], "MEMORY": []}
    for _, container in _containers(definition_request):
        merged = {
            _dict(r).get("type"): _dict(r).get("value")
            for r in _list(container.get("resourceRequirements"))
            if _dict(r).get("type") in ("VCPU", "MEMORY")
        }
        override = by_name.get(_name(container), {})
        merged.update({r["type"]: r["value"] for r in override.get("resourceRequirements", [])})
        for kind, amounts in totals.items():
            amount = _amount(merged.get(kind))
            if amount is None:
                return
            amounts.append(amount)
    yield from _fargate_size_rule(totals, "overrides resourceRequirements")


def check_parameters(
    definition_request: Mapping[str, Any],
    parameters: Mapping[str, str],
    *,
    container_overrides: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Check that every ``Ref::NAME`` in a command has a default or a submitted value.

    :param definition_request: the RegisterJobDefinition request the job is submitted against.
    :param parameters: the ``parameters`` of the SubmitJob request.
    :param container_overrides: the entries :func:`check_overrides` returned; a command given
        there replaces the definition's command for that container.
    :raises SubmitRequestError: naming each missing parameter, where it is used, and the fix.
    """
    problems: list[str] = []
    if not isinstance(parameters, Mapping):
        raise _submit_error(
            [
                f"parameters: must be a mapping of names to strings (found "
                f"{type(parameters).__name__}); write {{'EVENT_JSON': json.dumps(payload)}}"
            ]
        )
    for name, value in parameters.items():
        if not isinstance(value, str):
            problems.append(
                f"parameters[{name!r}]: must be a string (found {type(value).__name__}); "
                "serialize it once, e.g. json.dumps(payload), never str(payload)"
            )
    defaults = _dict(definition_request.get("parameters"))
    commands = {
        entry.get("name"): entry["command"]
        for entry in container_overrides
        if isinstance(entry, Mapping) and "command" in entry
    }
    for path, container in _containers(definition_request):
        container_name = _name(container)
        command = commands.get(container_name, container.get("command"))
        for token in _list(command):
            for ref in _REF.findall(token) if isinstance(token, str) else ():
                if ref not in parameters and ref not in defaults:
                    user = container_name or path
                    problems.append(
                        f"parameters[{ref!r}]: missing; the command of {user} uses "
                        f"Ref::{ref} and the job definition has no default (found none); pass "
                        f"parameters={{'{ref}': ...}} or add a default under parameters"
                    )
    if problems:
        raise _submit_error(list(dict.fromkeys(problems)))


def check_submit_size(request: Mapping[str, Any]) -> None:
    """Check the serialized SubmitJob request against Batch's 30 KiB limit.

    :param request: the SubmitJob request, exactly as it will be sent.
    :raises SubmitRequestError: naming the size, the limit and the largest part to shrink.
    """
    size = len(json.dumps(request, default=str).encode("utf-8"))
    if size <= SUBMIT_SIZE_LIMIT:
        return
    path, biggest = max(_leaf_sizes(request, ""), key=lambda item: item[1], default=("", 0))
    raise SubmitRequestError(
        f"SubmitJob request: too large for Batch (found {size} bytes serialized, the limit is "
        f"{SUBMIT_SIZE_LIMIT} bytes, 30 KiB); the largest part is {path} ({biggest} bytes): "
        "shrink the payload, e.g. pass an S3 URI to the data instead of the data itself"
    )


def _leaf_sizes(value: Any, path: str) -> Iterator[tuple[str, int]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            step = f".{key}" if str(key).isidentifier() else f'["{key}"]'
            yield from _leaf_sizes(item, f"{path}{step}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaf_sizes(item, f"{path}[{index}]")
    else:
        yield path, len(json.dumps(value, default=str).encode("utf-8"))


def _submit_error(problems: list[str]) -> SubmitRequestError:
    noun = "problem" if len(problems) == 1 else "problems"
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return SubmitRequestError(f"submit request: {len(problems)} {noun}:\n{lines}")


# -- helpers ----------------------------------------------------------------------------------


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _name(container: dict) -> str | None:
    """Return the container's name when it is a usable one (a non-empty string)."""
    name = container.get("name")
    return name if isinstance(name, str) and name else None


def _tasks(request: Mapping[str, Any]) -> list[dict]:
    tasks = _list(_dict(request.get("ecsProperties")).get("taskProperties"))
    return [task for task in tasks if isinstance(task, dict)]


def _containers(request: Mapping[str, Any]) -> Iterator[tuple[str, dict]]:
    """Yield (path, container) for every container of every ECS task of the request."""
    tasks = _list(_dict(_dict(request).get("ecsProperties")).get("taskProperties"))
    for t, task in enumerate(tasks):
        for c, container in enumerate(_list(_dict(task).get("containers"))):
            if isinstance(container, dict):
                yield f"ecsProperties.taskProperties[{t}].containers[{c}]", container


def _is_fargate(request: Mapping[str, Any]) -> bool:
    return "FARGATE" in _list(_dict(request).get("platformCapabilities"))


def _fargate_only_fields(task: dict) -> list[str]:
    return [
        field
        for field in ("platformVersion", "networkConfiguration", "ephemeralStorage")
        if field in task
    ]


def _amount(text: Any) -> Decimal | None:
    if not isinstance(text, str):
        return None
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _fmt(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


def _is_int_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


def _shown(value: Any, path: str = "") -> str:
    """Describe a value for a message; under ``environment`` only its type, never its text."""
    if ".environment" in path or path.startswith("environment"):
        return f"type {type(value).__name__}"
    if isinstance(value, dict):
        keys = ", ".join(str(key) for key in list(value)[:5])
        return f"a mapping with keys {keys}" if value else "an empty mapping"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
