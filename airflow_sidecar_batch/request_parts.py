"""Read a Batch request tolerantly, and show its values in messages.

The validation modules share these: each accessor returns an empty value instead of raising on a
malformed request, so every check can run and report on whatever it finds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

_INVALID_NAME_RUN = re.compile(r"[^A-Za-z0-9_-]+")
_REF = re.compile(r"Ref::([A-Za-z0-9_-]+)")


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


def _amount(text: Any) -> Decimal | None:
    if not isinstance(text, str):
        return None
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


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
