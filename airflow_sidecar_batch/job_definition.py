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

from airflow_sidecar_batch.compiler import CompiledDefinition, compile_job_definition
from airflow_sidecar_batch.exceptions import JobDefinitionError
from airflow_sidecar_batch.validation import validate_job_definition

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

    # YAML files are read as YAML even when they look like JSON: YAML also takes '#' comments.
    document = _parse(
        text,
        name,
        as_json=suffix == ".json"
        or (suffix not in (".yaml", ".yml") and text.lstrip().startswith("{")),
    )
    if not isinstance(document, dict):
        raise JobDefinitionError(
            f"the document is a {type(document).__name__}, expected a mapping of "
            "RegisterJobDefinition fields (jobDefinitionName, type, ecsProperties, ...)",
            source=name,
        )
    return document


def _parse(text: str, name: str, *, as_json: bool) -> Any:
    if as_json:
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

    Safe to call from many workers at once: when several register the same new content, each
    looks again after registering, and every one but the oldest revision's author deregisters
    the revision it has just made and returns the oldest. No other revision is ever deregistered.

    :param hook: the Batch hook to call.
    :param definition: a RegisterJobDefinition request.
    """
    name = definition["jobDefinitionName"]
    digest = fingerprint(definition)
    twins = _same_content(hook.describe_active_job_definitions(name), digest)
    if twins:
        log.info("Reusing job definition %s (same content)", twins[0]["jobDefinitionArn"])
        return twins[0]["jobDefinitionArn"]

    arn = hook.register_job_definition(tagged_request(definition))
    mine = _revision_number(arn)
    twins = _same_content(hook.describe_active_job_definitions(name), digest)
    older = [twin for twin in twins if mine is None or _revision_of(twin) < mine]
    if older and older[0]["jobDefinitionArn"] != arn:
        hook.deregister_job_definition(arn)
        log.info(
            "Job definition %s was registered concurrently with the same content; "
            "deregistered our duplicate %s",
            older[0]["jobDefinitionArn"],
            arn,
        )
        return older[0]["jobDefinitionArn"]
    log.info("Registered job definition %s", arn)
    return arn


def refresh_job_definition(
    hook: SidecarBatchHook, definition: Mapping[str, Any], stale_arn: str
) -> str | None:
    """Ensure again after SubmitJob refused ``stale_arn``; return a new ARN, or None.

    A revision can be deregistered by someone else between ensure and submit. The caller that
    gets a ``ClientException`` from SubmitJob calls this once: a returned ARN means ``stale_arn``
    is no longer the ACTIVE revision for this content, so submit once more with the new ARN;
    None means ``stale_arn`` is still ACTIVE, so the refusal had another cause: re-raise it.
    No error message is parsed.

    :param hook: the Batch hook to call.
    :param definition: the same RegisterJobDefinition request the first ensure was given.
    :param stale_arn: the ARN SubmitJob refused.
    """
    arn = ensure_job_definition(hook, definition)
    return None if arn == stale_arn else arn


def tagged_request(definition: Mapping[str, Any]) -> dict[str, Any]:
    """Return the RegisterJobDefinition request with its fingerprint tag, as ensure sends it.

    :param definition: a RegisterJobDefinition request.
    """
    request = copy.deepcopy(dict(definition))
    request["tags"] = {**(request.get("tags") or {}), FINGERPRINT_TAG: fingerprint(definition)}
    return request


def prepare_job_definition(source: Mapping[str, Any] | str | Path) -> CompiledDefinition:
    """Load, compile and validate a job definition: what the operator registers.

    :param source: as for :func:`load_job_definition`.
    :raises JobDefinitionError: for a parse error, anything that cannot be converted, or every
        problem validation finds; the message names the file when there is one.
    """
    raw = load_job_definition(source)
    try:
        compiled = compile_job_definition(raw)
        validate_job_definition(compiled.request)
    except JobDefinitionError as err:
        if err.source is None and _file_name(source):
            raise JobDefinitionError(err.problems, source=_file_name(source)) from err
        raise
    return compiled


def _same_content(revisions: list[dict[str, Any]], digest: str) -> list[dict[str, Any]]:
    """Return the revisions tagged with ``digest``, oldest first: the oldest one is kept."""
    twins = [r for r in revisions if (r.get("tags") or {}).get(FINGERPRINT_TAG) == digest]
    return sorted(twins, key=_revision_of)


def _revision_of(revision: Mapping[str, Any]) -> int:
    number = revision.get("revision")
    if isinstance(number, int):
        return number
    parsed = _revision_number(str(revision.get("jobDefinitionArn", "")))
    return parsed if parsed is not None else 0


def _revision_number(arn: str) -> int | None:
    """Return the revision of ``arn:...:job-definition/name:3``, or None if it has none."""
    tail = arn.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() and arn.count(":") >= 1 else None


def _file_name(source: Mapping[str, Any] | str | Path) -> str | None:
    if isinstance(source, Path):
        return str(source)
    if (
        isinstance(source, str)
        and "\n" not in source
        and source.rstrip().endswith((".json", ".yaml", ".yml"))
    ):
        return source
    return None
