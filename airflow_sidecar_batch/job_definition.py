"""Job definitions: load what the user wrote, fingerprint it, and make sure Batch has it.

A job definition is registered only when no ACTIVE revision carries the same fingerprint, so a
DAG that runs every day adds a revision only on the day its definition changes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from airflow_sidecar_batch.exceptions import JobDefinitionError

if TYPE_CHECKING:
    from airflow_sidecar_batch.hooks import SidecarBatchHook

log = logging.getLogger(__name__)

#: The tag that carries a revision's fingerprint, so the next run can find it.
FINGERPRINT_TAG = "sidecar-batch:fingerprint"

#: Fields Batch adds to a described revision that are not part of what was registered.
_DESCRIBE_ONLY = ("jobDefinitionArn", "revision", "status", "containerOrchestrationType")


def load_job_definition(source: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Load a job definition from a mapping, a JSON or YAML file, or JSON/YAML text.

    :param source: a mapping, a path to a ``.json``/``.yaml``/``.yml`` file, or the text of one
        (what Airflow hands over after rendering a templated file).
    :raises JobDefinitionError: when the text does not parse or is not a mapping; the message
        names the file, line and column.
    """
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))

    name = "<text>"
    text = str(source)
    suffix = ""
    if isinstance(source, Path) or (
        "\n" not in text and text.rstrip().endswith((".json", ".yaml", ".yml"))
    ):
        path = Path(source)
        name, suffix = str(path), path.suffix
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise JobDefinitionError(
                f"cannot read {path}: {err.strerror}; pass a path that exists or a dict",
                source=name,
            ) from err

    document = _parse(text, name, json_only=suffix == ".json")
    if not isinstance(document, dict):
        raise JobDefinitionError(
            f"the document is a {type(document).__name__}, expected a mapping of "
            "RegisterJobDefinition fields (jobDefinitionName, type, ecsProperties, ...)",
            source=name,
        )
    return document


def _parse(text: str, name: str, *, json_only: bool) -> Any:
    if json_only or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            found = _line_at(text, err.lineno)
            hint = (
                "JSON has no comments; remove the '#' and what follows it on that line"
                if "#" in found[max(err.colno - 2, 0) :]
                else err.msg
            )
            raise JobDefinitionError(
                f"line {err.lineno}, column {err.colno}: {hint} (found: {found.strip()!r})",
                source=name,
            ) from err
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise JobDefinitionError(
            f"line {line}, column {column}: {err.problem}", source=name
        ) from err


def _line_at(text: str, lineno: int) -> str:
    lines = text.splitlines()
    return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


def fingerprint(definition: Mapping[str, Any]) -> str:
    """Return a hash of what the definition means to Batch.

    Key order, the order of ``environment`` entries, our own fingerprint tag and defaults Batch
    fills in (an omitted ``essential`` is ``true``) do not change it.
    """
    canonical = _canonical(copy.deepcopy(dict(definition)))
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(definition: dict[str, Any]) -> dict[str, Any]:
    for field in _DESCRIBE_ONLY:
        definition.pop(field, None)
    tags = dict(definition.get("tags") or {})
    tags.pop(FINGERPRINT_TAG, None)
    if tags:
        definition["tags"] = tags
    else:
        definition.pop("tags", None)
    for task in (definition.get("ecsProperties") or {}).get("taskProperties") or []:
        for container in task.get("containers") or []:
            container.setdefault("essential", True)
            if "environment" in container:
                container["environment"] = sorted(
                    container["environment"], key=lambda pair: str(pair.get("name"))
                )
    return definition


def ensure_job_definition(hook: SidecarBatchHook, definition: Mapping[str, Any]) -> str:
    """Return the ARN of an ACTIVE revision with this content, registering one if none has.

    :param hook: the Batch hook to call.
    :param definition: a RegisterJobDefinition request.
    """
    name = definition["jobDefinitionName"]
    digest = fingerprint(definition)
    for revision in hook.describe_active_job_definitions(name):
        if (revision.get("tags") or {}).get(FINGERPRINT_TAG) == digest:
            log.info("Reusing job definition %s (same content)", revision["jobDefinitionArn"])
            return revision["jobDefinitionArn"]

    request = copy.deepcopy(dict(definition))
    request["tags"] = {**(request.get("tags") or {}), FINGERPRINT_TAG: digest}
    arn = hook.register_job_definition(request)
    log.info("Registered job definition %s", arn)
    return arn
