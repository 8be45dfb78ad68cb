"""The ``sidecar-batch lint`` and ``sidecar-batch render`` commands.

``lint`` says everything about a job definition file at once: parse errors with line and
column, what the compiler converted, every validation problem, and warnings. ``render`` prints
the exact RegisterJobDefinition request that ensure would send, fingerprint tag included.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from airflow_sidecar_batch.compiler import compile_job_definition
from airflow_sidecar_batch.exceptions import JobDefinitionError
from airflow_sidecar_batch.job_definition import (
    load_job_definition,
    prepare_job_definition,
    tagged_request,
)
from airflow_sidecar_batch.validation import lint_job_definition, validate_job_definition

__all__ = ["lint_command", "render_command"]


def lint_command(path: str) -> int:
    """Print the problems, conversions and warnings of a job definition file.

    :param path: a ``.json``, ``.yaml`` or ``.yml`` file.
    :return: the exit code: 1 when the file has problems, 0 otherwise (warnings included).
    """
    try:
        raw = load_job_definition(Path(path))
        with _quiet_compiler():
            compiled = compile_job_definition(raw)
    except JobDefinitionError as err:
        _print(JobDefinitionError(err.problems, source=path))
        return 1

    _print_list(path, "conversion", compiled.conversions)
    problems: list[str] = []
    try:
        validate_job_definition(compiled.request)
    except JobDefinitionError as err:
        problems = err.problems
    _print_list(path, "problem", problems)
    _print_list(path, "warning", lint_job_definition(compiled.request))
    if problems:
        return 1
    _print(f"{path}: valid RegisterJobDefinition request")
    return 0


def render_command(path: str) -> int:
    """Print the exact RegisterJobDefinition request ensure would send for a file, as JSON.

    :param path: a ``.json``, ``.yaml`` or ``.yml`` file.
    :return: the exit code: 1 when the file has problems (printed to stderr), 0 otherwise.
    """
    try:
        with _quiet_compiler():
            compiled = prepare_job_definition(Path(path))
    except JobDefinitionError as err:
        _print(err, stream=sys.stderr)
        return 1
    _print(json.dumps(tagged_request(compiled.request), indent=2))
    return 0


@contextlib.contextmanager
def _quiet_compiler() -> Iterator[None]:
    """Hold back the compiler's INFO lines while a command prints the conversions itself.

    Airflow's logging writes to stdout, where those lines would repeat what lint prints and
    break the JSON render prints.
    """
    logger = logging.getLogger(compile_job_definition.__module__)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _print_list(path: str, noun: str, lines: tuple[str, ...] | list[str]) -> None:
    if lines:
        plural = noun if len(lines) == 1 else f"{noun}s"
        _print(f"{path}: {len(lines)} {plural}:")
        for line in lines:
            _print(f"  - {line}")


def _print(message: object, stream: TextIO | None = None) -> None:
    print(message, file=stream or sys.stdout)
