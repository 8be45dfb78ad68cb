"""The rules Batch enforces on a job definition beyond what its model says.

Names, task and container counts, essential containers, ``dependsOn`` targets, conditions and
cycles, reserved names and tags, the request size, and for Fargate the execution role, log
drivers, resource requirements and the task sizes. Each rule yields its problems in the form
``<path>: <what is wrong> (found <value>); <the fix>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Iterator, Mapping
from decimal import Decimal
from typing import Any

from airflow_sidecar_batch.request_parts import (
    _INVALID_NAME_RUN,
    _amount,
    _dict,
    _is_fargate,
    _list,
    _name,
    _shown,
    _tasks,
)

__all__ = ["DEFINITION_SIZE_LIMIT", "FARGATE_SIZES", "fargate_size_fix"]

#: Batch refuses a RegisterJobDefinition request larger than this, in bytes of serialized JSON.
DEFINITION_SIZE_LIMIT = 24 * 1024

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
#: ensure adds one tag (name plus a 64-hex digest) after validation; keep room for it.
_TAG_RESERVE = 100

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_CONTAINER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_FARGATE_LOG_DRIVERS = ("awslogs", "splunk", "awsfirelens")
_RESOURCE_TYPES = ("VCPU", "MEMORY", "GPU")


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


def _fargate_only_fields(task: dict) -> list[str]:
    return [
        field
        for field in ("platformVersion", "networkConfiguration", "ephemeralStorage")
        if field in task
    ]


def _fmt(amount: Decimal) -> str:
    return format(amount.normalize(), "f")
