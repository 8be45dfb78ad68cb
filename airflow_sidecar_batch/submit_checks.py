"""Check a SubmitJob request before it is sent: the job name, overrides, parameters, size.

Overrides and parameters are checked against the RegisterJobDefinition request the job is
submitted against. Every problem is collected and reported at once, one line each, in the form
``<path>: <what is wrong> (found <value>); <the fix>``; values of ``environment`` entries are
never shown, only their names and types.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from airflow_sidecar_batch.batch_rules import _fargate_size_rule
from airflow_sidecar_batch.exceptions import SubmitRequestError
from airflow_sidecar_batch.request_parts import (
    _INVALID_NAME_RUN,
    _REF,
    _amount,
    _containers,
    _dict,
    _is_fargate,
    _list,
    _name,
    _shown,
)

__all__ = [
    "SUBMIT_SIZE_LIMIT",
    "check_overrides",
    "check_parameters",
    "check_submit_size",
    "job_name_for",
]

#: Batch refuses a SubmitJob request larger than this, in bytes of serialized JSON.
SUBMIT_SIZE_LIMIT = 30 * 1024
#: Fields a SubmitJob container override may carry.
OVERRIDE_FIELDS = ("command", "environment", "resourceRequirements")


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
