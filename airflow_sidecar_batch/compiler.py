"""Compile ECS task-definition habits into the shape AWS Batch's RegisterJobDefinition accepts.

People copy job definitions from ECS task definitions and blog posts. What has a Batch
equivalent is converted, one sentence per conversion (logged at INFO and returned); what has none
is refused with the reason and what to write instead. A request already in Batch's shape passes
through unchanged, with no conversions.

The conversions:

- task-level ``cpu``/``memory`` become per-container ``resourceRequirements`` (VCPU, MEMORY in
  MiB), split across the containers that have none, so their sum is the task size;
- ``fargatePlatformConfiguration.platformVersion`` becomes the task's ``platformVersion``;
- ``portMappings`` and ``orchestrationType`` are dropped;
- a ``healthCheck`` plus a dependent's ``dependsOn ... HEALTHY`` becomes ``START`` plus the
  readiness settings (:data:`READINESS_ENV`) in the dependent's environment; the dependent's
  program waits for the URL itself.
"""

from __future__ import annotations

import copy
import logging
import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from airflow_sidecar_batch.batch_rules import fargate_size_fix
from airflow_sidecar_batch.exceptions import JobDefinitionError

__all__ = ["READINESS_ENV", "CompiledDefinition", "compile_job_definition"]

log = logging.getLogger(__name__)

#: The variables the data-pipeline program reads to wait for the app (health check -> name).
READINESS_ENV = {
    "url": "SIDECAR_READY_URL",
    "interval": "SIDECAR_READY_INTERVAL_SECONDS",
    "retries": "SIDECAR_READY_RETRIES",
    "startPeriod": "SIDECAR_READY_START_PERIOD_SECONDS",
    "timeout": "SIDECAR_READY_TIMEOUT_SECONDS",
}
#: What ECS assumes when a health check leaves a setting out, and the least the wait accepts.
_HEALTH_DEFAULTS = {"interval": 30, "retries": 3, "startPeriod": 0, "timeout": 5}
_HEALTH_MINIMUMS = {"interval": 0, "retries": 1, "startPeriod": 0, "timeout": 1}
_HTTP_TOOLS = ("curl", "wget")
_SHELLS = ("sh", "bash", "ash", "dash")
_SHELL_OPERATORS = ("||", "&&", ";", "|")
_URL = re.compile(r"^https?://\S+$")
#: Share sizes tried in turn when splitting a task size: the coarsest that splits it evenly wins.
_VCPU_STEPS = tuple(Decimal(1) / 2**power for power in range(2, 11))
_MEMORY_STEPS = tuple(Decimal(step) for step in (512, 256, 128, 64, 32, 16, 8, 4))
_HEALTH_FIX = (
    'write the health check as ["CMD-SHELL", "curl -f http://localhost:8080/health || exit 1"] '
    "with your app's URL, or depend on it with START and set SIDECAR_READY_URL on the dependent"
)


@dataclass(frozen=True)
class CompiledDefinition:
    """A RegisterJobDefinition request and the conversions that produced it.

    :param request: the request, in the shape Batch accepts.
    :param conversions: one sentence per conversion, naming the path it applied to.
    """

    request: dict[str, Any]
    conversions: tuple[str, ...] = ()


def compile_job_definition(raw: Mapping[str, Any]) -> CompiledDefinition:
    """Convert what has a Batch equivalent; refuse what has none.

    Parts in a shape this function does not recognise are left as they are, for
    :func:`~airflow_sidecar_batch.validation.validate_job_definition` to report.

    :param raw: a loaded job definition, Batch-shaped or ECS-flavoured; it is not modified.
    :raises JobDefinitionError: listing everything that cannot be converted.
    """
    request = copy.deepcopy(dict(raw))
    conversions: list[str] = []
    refusals: list[str] = []

    if "orchestrationType" in request:
        value = request.pop("orchestrationType")
        conversions.append(
            f"orchestrationType ({_short(value)}) dropped: RegisterJobDefinition has no such "
            "field; ecsProperties already means ECS orchestration"
        )
    fargate = "FARGATE" in _list(request.get("platformCapabilities"))
    tasks = _list(_dict(request.get("ecsProperties")).get("taskProperties"))
    for index, task in enumerate(tasks):
        if isinstance(task, dict):
            path = f"ecsProperties.taskProperties[{index}]"
            _move_platform_version(task, path, conversions, refusals)
            _drop_port_mappings(task, path, conversions)
            _convert_health_checks(task, path, conversions, refusals)
            _split_task_size(task, path, fargate, conversions, refusals)

    if refusals:
        raise JobDefinitionError(refusals)
    for conversion in conversions:
        log.info("%s", conversion)
    return CompiledDefinition(request=request, conversions=tuple(conversions))


def _move_platform_version(
    task: dict, path: str, conversions: list[str], refusals: list[str]
) -> None:
    config = task.get("fargatePlatformConfiguration")
    if not isinstance(config, dict) or not set(config) <= {"platformVersion"}:
        return
    version = config.get("platformVersion")
    where = f"{path}.fargatePlatformConfiguration.platformVersion"
    if version is not None and task.get("platformVersion", version) != version:
        refusals.append(
            f"{where}: conflicts with {path}.platformVersion (found {version!r} and "
            f"{task['platformVersion']!r}); keep only platformVersion"
        )
        return
    if version is None:
        task.pop("fargatePlatformConfiguration")
        conversions.append(f"{path}.fargatePlatformConfiguration dropped: it was empty")
        return
    _rename_key(task, "fargatePlatformConfiguration", "platformVersion", version)
    conversions.append(
        f"{where} ({version}) moved to {path}.platformVersion: Batch's name for the same setting"
    )


def _drop_port_mappings(task: dict, path: str, conversions: list[str]) -> None:
    for index, container in enumerate(_list(task.get("containers"))):
        if isinstance(container, dict) and "portMappings" in container:
            ports = [
                str(_dict(mapping).get("containerPort"))
                for mapping in _list(container.pop("portMappings"))
                if _dict(mapping).get("containerPort") is not None
            ]
            reach = ", ".join(f"localhost:{port}" for port in ports) or "localhost"
            conversions.append(
                f"{path}.containers[{index}].portMappings dropped: the containers share the "
                f"task's network namespace, so the others reach {_label(container, index)} "
                f"on {reach}"
            )


def _convert_health_checks(
    task: dict, path: str, conversions: list[str], refusals: list[str]
) -> None:
    containers = [c if isinstance(c, dict) else {} for c in _list(task.get("containers"))]
    by_name = {c["name"]: i for i, c in enumerate(containers) if isinstance(c.get("name"), str)}
    readiness: dict[str, dict[str, str] | None] = {}
    waiting_for: dict[int, str] = {}

    for index, container in enumerate(containers):
        for position, dependency in enumerate(_list(container.get("dependsOn"))):
            if not isinstance(dependency, dict) or dependency.get("condition") != "HEALTHY":
                continue
            where = f"{path}.containers[{index}].dependsOn[{position}]"
            target = dependency.get("containerName")
            target_index = by_name.get(target, -1) if isinstance(target, str) else -1
            if (
                not isinstance(target, str)
                or target_index < 0
                or "healthCheck" not in containers[target_index]
            ):
                refusals.append(
                    f"{where}.condition: Batch has no HEALTHY, and {_short(target)} has no "
                    "healthCheck to take the URL from (found HEALTHY); use START, and set "
                    f"SIDECAR_READY_URL on {_label(container, index)} if it must wait for an answer"
                )
                continue
            if waiting_for.get(index, target) != target:
                refusals.append(
                    f"{where}.containerName: {_label(container, index)} already waits for "
                    f"{waiting_for[index]} to be healthy (found HEALTHY on {target} too); the "
                    "readiness wait takes one URL: use START for all but one of them"
                )
                continue
            if target not in readiness:
                health_path = f"{path}.containers[{target_index}].healthCheck"
                health = containers[target_index]["healthCheck"]
                readiness[target] = _readiness(health, health_path, refusals)
            settings = readiness[target]
            if settings is None:
                continue
            if index not in waiting_for and not _add_readiness(
                container, settings, f"{path}.containers[{index}]", refusals
            ):
                continue
            waiting_for[index] = target
            dependency["condition"] = "START"
            conversions.append(
                f"{where}.condition HEALTHY became START: Batch has no HEALTHY, so "
                f"{_label(container, index)} now waits for {settings['url']} itself "
                f"(every {settings['interval']} s, {settings['retries']} retries, "
                f"{settings['startPeriod']} s start period, {settings['timeout']} s timeout; "
                "set as SIDECAR_READY_* environment variables)"
            )

    for index, container in enumerate(containers):
        if "healthCheck" in container:
            container.pop("healthCheck")
            reason = (
                "its URL now drives the readiness wait of the containers that depended on it"
                if _label(container, index) in readiness
                else "no container waited for it"
            )
            conversions.append(
                f"{path}.containers[{index}].healthCheck removed: Batch containers have no "
                f"health check; {reason}"
            )


def _readiness(health: Any, path: str, refusals: list[str]) -> dict[str, str] | None:
    """Return the readiness settings of an ECS health check, or None after refusing it."""
    if not isinstance(health, dict):
        refusals.append(
            f"{path}: must be a mapping with command, interval, retries, startPeriod and "
            f"timeout (found {_short(health)}); {_HEALTH_FIX}"
        )
        return None
    command = health.get("command")
    url = _health_url(command)
    if url is None:
        refusals.append(
            f"{path}.command: no http:// URL checked with curl or wget in it (found "
            f"{_short(command, 120)}); {_HEALTH_FIX}"
        )
        return None
    settings = {"url": url}
    for field, default in _HEALTH_DEFAULTS.items():
        value = health.get(field, default)
        # isdecimal, not isdigit: "²" is a digit that int() refuses.
        if isinstance(value, str) and value.strip().isdecimal():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < _HEALTH_MINIMUMS[field]:
            unit = "retries" if field == "retries" else "seconds"
            refusals.append(
                f"{path}.{field}: must be a whole number of {unit}, at least "
                f"{_HEALTH_MINIMUMS[field]} (found {_short(value)}); write e.g. {default}"
            )
            return None
        settings[field] = str(value)
    return settings


def _health_url(command: Any) -> str | None:
    """Return the one http(s) URL a curl or wget health command fetches, if it is that."""
    if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
        return None
    if command[:1] == ["CMD-SHELL"]:
        try:
            tokens = shlex.split(" ".join(command[1:]))
        except ValueError:
            return None
    elif command[:1] == ["CMD"]:
        tokens = command[1:]
    else:
        return None
    if len(tokens) >= 3 and posixpath.basename(tokens[0]) in _SHELLS and tokens[1] == "-c":
        return _health_url(["CMD-SHELL", tokens[2]])

    # Only the first command of a shell list is the probe; what follows ('|| exit 1') is not.
    first = next((i for i, token in enumerate(tokens) if token in _SHELL_OPERATORS), len(tokens))
    probe = tokens[:first]
    if not probe or posixpath.basename(probe[0]) not in _HTTP_TOOLS:
        return None
    urls = {
        argument.split("=", 1)[-1] if argument.startswith("--url=") else argument
        for argument in probe[1:]
    }
    urls = {url for url in urls if _URL.match(url) and "$" not in url}
    return urls.pop() if len(urls) == 1 else None


def _add_readiness(
    container: dict, settings: dict[str, str], path: str, refusals: list[str]
) -> bool:
    environment = container.setdefault("environment", [])
    if not isinstance(environment, list):
        refusals.append(
            f"{path}.environment: must be a list of {{name, value}} to receive the readiness "
            f"settings (found type {type(environment).__name__}); write [{{name, value}}, ...]"
        )
        return False
    taken = sorted(
        pair["name"]
        for pair in environment
        if isinstance(pair, dict) and pair.get("name") in READINESS_ENV.values()
    )
    if taken:
        refusals.append(
            f"{path}.environment: already sets {', '.join(taken)} (found them next to a "
            "HEALTHY dependency); remove them and keep the healthCheck, or drop the "
            "healthCheck and use START"
        )
        return False
    environment.extend(
        {"name": name, "value": settings[field]} for field, name in READINESS_ENV.items()
    )
    return True


def _split_task_size(
    task: dict, path: str, fargate: bool, conversions: list[str], refusals: list[str]
) -> None:
    if "cpu" not in task and "memory" not in task:
        return
    found = f"cpu {_short(task.get('cpu'))}, memory {_short(task.get('memory'))}"
    sizes = {"VCPU": _parse_cpu(task.get("cpu")), "MEMORY": _parse_memory(task.get("memory"))}
    for field, kind in (("cpu", "VCPU"), ("memory", "MEMORY")):
        if field in task and sizes[kind] is None:
            refusals.append(
                f"{path}.{field}: not a size (found {found}); write cpu in CPU units ('1024' is "
                "1 vCPU) or as '1 vCPU', and memory in MiB ('2048') or as '2 GB'"
            )
            return
    vcpu, memory = sizes["VCPU"], sizes["MEMORY"]
    fix = fargate_size_fix(vcpu, memory) if fargate and vcpu is not None else None
    if fix:
        refusals.append(f"{path}.cpu: not a Fargate task size (found {found}); {fix}")
        return
    containers = [c for c in _list(task.get("containers")) if isinstance(c, dict)]
    if not containers:
        refusals.append(f"{path}.cpu: no containers to give it to (found {found}); add some")
        return

    shares: dict[str, dict[int, Decimal]] = {}
    for kind, total in sizes.items():
        split = _shares(containers, kind, total, path, refusals) if total is not None else {}
        if split is not None:
            shares[kind] = split
    if len(shares) < len(sizes):
        return

    task.pop("cpu", None)
    task.pop("memory", None)
    given = []
    for index, container in enumerate(containers):
        added = []
        for kind, split in shares.items():
            if index in split:
                value = _fmt(split[index])
                container.setdefault("resourceRequirements", []).append(
                    {"type": kind, "value": value}
                )
                added.append(f"{kind} {value}")
        given.append(f"{_label(container, index)} {' + '.join(added) or 'kept its own'}")
    totals = [
        f"{_fmt(vcpu)} vCPU" if vcpu is not None else "",
        _fmt(memory) + " MiB" if memory else "",
    ]
    conversions.append(
        f"{path}.cpu/memory ({', '.join(t for t in totals if t)}) became per-container "
        f"resourceRequirements: {'; '.join(given)}; Batch sizes each container, and the task "
        "is their sum"
    )


def _shares(
    containers: list[dict], kind: str, total: Decimal, path: str, refusals: list[str]
) -> dict[int, Decimal] | None:
    """Return the share of ``total`` for each container without its own ``kind`` requirement."""
    field, unit = ("cpu", "vCPU") if kind == "VCPU" else ("memory", "MiB")
    own: dict[int, Decimal] = {}
    for index, container in enumerate(containers):
        for requirement in _list(container.get("resourceRequirements")):
            if _dict(requirement).get("type") != kind:
                continue
            amount = _decimal(_dict(requirement).get("value"))
            if amount is None:
                refusals.append(
                    f"{path}.containers[{index}].resourceRequirements: {kind} is not a number "
                    f"(found {_short(_dict(requirement).get('value'))}); fix it so the task "
                    f"{field} can be split"
                )
                return None
            own[index] = amount
    lacking = [index for index in range(len(containers)) if index not in own]
    remainder = total - sum(own.values(), Decimal(0))
    if (not lacking and remainder != 0) or (lacking and remainder <= 0):
        refusals.append(
            f"{path}.{field}: the containers' own {kind} add up to {_fmt(total - remainder)} "
            f"{unit}, the task's {field} is {_fmt(total)} (found {kind} on {len(own)} of "
            f"{len(containers)} containers); make them agree, or remove the task's {field}"
        )
        return None
    if not lacking:
        return {}
    steps = _VCPU_STEPS if kind == "VCPU" else _MEMORY_STEPS
    split = _split(remainder, len(lacking), steps)
    if split is None:
        refusals.append(
            f"{path}.{field}: {_fmt(remainder)} {unit} cannot be split across {len(lacking)} "
            f"containers (found {_fmt(total)} {unit} in total); give the containers "
            "resourceRequirements yourself"
        )
        return None
    return dict(zip(lacking, split, strict=True))


def _split(total: Decimal, count: int, steps: tuple[Decimal, ...]) -> list[Decimal] | None:
    """Split ``total`` into ``count`` shares, each a multiple of one of ``steps``.

    Equal shares in the coarsest step win; failing that, near-equal shares in the coarsest step
    that divides the total, the first containers taking the odd steps.
    """
    if count == 1:
        return [total]
    for step in steps:
        if total % (step * count) == 0:
            return [total / count] * count
    for step in steps:
        chunks = total / step
        if chunks == int(chunks) and chunks >= count:
            base, extra = divmod(int(chunks), count)
            return [(base + (1 if k < extra else 0)) * step for k in range(count)]
    return None


def _parse_cpu(value: Any) -> Decimal | None:
    """Parse ECS's task cpu: CPU units ('1024', 1024) or vCPU ('1 vCPU'); return vCPU."""
    parsed = _number_and_unit(value, "vcpu")
    if parsed is None:
        return None
    amount, has_unit = parsed
    return amount if has_unit else amount / 1024


def _parse_memory(value: Any) -> Decimal | None:
    """Parse ECS's task memory: MiB ('2048', 2048) or GiB ('2 GB'); return whole MiB."""
    parsed = _number_and_unit(value, "gb")
    if parsed is None:
        return None
    amount, has_unit = parsed
    mib = amount * 1024 if has_unit else amount
    return mib if mib == int(mib) else None


def _number_and_unit(value: Any, unit: str) -> tuple[Decimal, bool] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        amount, has_unit = Decimal(value), False
    elif isinstance(value, str):
        match = re.fullmatch(rf"\s*(\d+(?:\.\d+)?)\s*({unit})?\s*", value, re.IGNORECASE)
        if match is None:
            return None
        amount, has_unit = Decimal(match.group(1)), match.group(2) is not None
    else:
        return None
    return (amount, has_unit) if amount > 0 else None


def _has(container: dict, kind: str) -> bool:
    return any(
        _dict(requirement).get("type") == kind
        for requirement in _list(container.get("resourceRequirements"))
    )


def _rename_key(mapping: dict, old: str, new: str, value: Any) -> None:
    """Replace ``old`` by ``new`` in place, keeping its position, so rendered output reads well."""
    items = [(new, value) if key == old else (key, item) for key, item in mapping.items()]
    mapping.clear()
    mapping.update(items)


def _label(container: dict, index: int) -> str:
    name = container.get("name")
    return name if isinstance(name, str) else f"containers[{index}]"


def _decimal(value: Any) -> Decimal | None:
    try:
        amount = Decimal(str(value).strip()) if isinstance(value, str) else None
    except InvalidOperation:
        return None
    return amount if amount is not None and amount.is_finite() else None


def _fmt(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []
