"""Faults the local endpoint injects on request, to rehearse what AWS does on a bad day.

A fault document lists rules; each rule has a ``kind``:

- ``throttle``: answer a fraction of the calls to one API as AWS answers throttled calls;
- ``error``: answer a fraction of the calls to one API with a 500 or 503;
- ``delay_logs``: make the lines a job's containers print readable only some seconds later;
- ``hold_runnable``: keep a job in RUNNABLE for some seconds, or until the rule is removed;
- ``exit_code``: report another exit code for a container once its program has ended.

An API is named as the endpoint's call counter names it: ``batch.<Operation>``,
``logs.<Operation>`` or ``s3.<HTTP method>``. A rule with ``job_name_prefix`` applies only where
a job whose name starts with it is involved, so tests running side by side do not disturb each
other. :class:`Faults` holds the current rules and is safe to use from any thread.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import math
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import botocore.session
import yaml

__all__ = ["KINDS", "Fault", "Faults", "InjectedError", "InvalidFaultsError", "error_answer"]

log = logging.getLogger(__name__)

KINDS = ("throttle", "error", "delay_logs", "hold_runnable", "exit_code")

# Per kind: the fields a rule must have, and those it may have besides ``kind``.
_REQUIRED = {
    "throttle": ("api", "fraction"),
    "error": ("api", "fraction"),
    "delay_logs": ("seconds",),
    "hold_runnable": (),
    "exit_code": ("container", "exit_code"),
}
_OPTIONAL = {
    "throttle": ("job_name_prefix",),
    "error": ("status", "job_name_prefix"),
    "delay_logs": ("job_name_prefix",),
    "hold_runnable": ("seconds", "job_name_prefix"),
    "exit_code": ("job_name_prefix",),
}
_S3_METHODS = ("DELETE", "GET", "HEAD", "POST", "PUT")
_ERROR_STATUSES = (500, 503)

# What AWS answers, per service and per (kind, status): error code and message. The throttling
# codes are those botocore's retry handlers classify as throttling (retries/standard.py and
# data/_retry.json); 5xx statuses are retried as transient errors whatever the code.
_ANSWERS: dict[str, dict[tuple[str, int], tuple[str, str]]] = {
    "batch": {
        ("throttle", 429): ("TooManyRequestsException", "Too Many Requests"),
        ("error", 500): ("InternalFailure", "The request processing has failed"),
        ("error", 503): ("ServiceUnavailable", "The service is unavailable"),
    },
    "logs": {
        ("throttle", 400): ("ThrottlingException", "Rate exceeded"),
        ("error", 500): ("InternalFailure", "The request processing has failed"),
        ("error", 503): ("ServiceUnavailable", "The service is unavailable"),
    },
    "s3": {
        ("throttle", 503): ("SlowDown", "Please reduce your request rate."),
        ("error", 500): ("InternalError", "We encountered an internal error. Please try again."),
        ("error", 503): ("ServiceUnavailable", "Service is unable to handle request."),
    },
}
_THROTTLE_STATUS = {"batch": 429, "logs": 400, "s3": 503}


class InvalidFaultsError(ValueError):
    """Raised when a fault document is malformed; the message names the rule and the field."""


@dataclass(frozen=True)
class Fault:
    """One rule of a fault document; which fields count depends on ``kind``.

    :param kind: one of :data:`KINDS`.
    :param job_name_prefix: applies only where a job whose name starts with it is involved.
    :param api: ``<service>.<operation>`` for ``throttle`` and ``error``.
    :param fraction: the share of matching calls answered with the fault, 0 to 1.
    :param status: 500 or 503, for ``error``.
    :param seconds: the delay of ``delay_logs``; how long ``hold_runnable`` holds (None: until
        the rule is removed).
    :param container: the container whose exit code ``exit_code`` replaces.
    :param exit_code: the code reported instead of the program's own.
    """

    kind: str
    job_name_prefix: str | None = None
    api: str | None = None
    fraction: float = 0.0
    status: int = 500
    seconds: float | None = None
    container: str | None = None
    exit_code: int = 0

    def concerns(self, job_name: str) -> bool:
        """Say whether this rule applies to a job of this name."""
        return self.job_name_prefix is None or job_name.startswith(self.job_name_prefix)

    def to_document(self) -> dict[str, Any]:
        """Return the rule as it reads in a fault document, defaults filled in."""
        fields = ("kind", *_REQUIRED[self.kind], *_OPTIONAL[self.kind])
        document = {name: getattr(self, name) for name in fields}
        return {name: value for name, value in document.items() if value is not None}

    def describe(self) -> str:
        """Say in a few words what the rule does, for the endpoint's log."""
        scope = f" for jobs {self.job_name_prefix}*" if self.job_name_prefix else ""
        if self.kind == "throttle":
            return f"throttle {self.fraction:.0%} of {self.api}{scope}"
        if self.kind == "error":
            return f"answer {self.status} to {self.fraction:.0%} of {self.api}{scope}"
        if self.kind == "delay_logs":
            return f"delay log lines by {self.seconds:g} s{scope}"
        if self.kind == "hold_runnable":
            held = f"{self.seconds:g} s" if self.seconds is not None else "until cleared"
            return f"hold in RUNNABLE {held}{scope}"
        return f"exit code {self.exit_code} for container {self.container}{scope}"


@dataclass(frozen=True)
class InjectedError:
    """An answer to give instead of serving a call.

    :param kind: ``throttle`` or ``error``.
    :param status: the HTTP status AWS gives for it in this service's protocol.
    """

    kind: str
    status: int


@dataclass
class _Rules:
    seed: int | None = None
    faults: list[Fault] = field(default_factory=list)
    # One generator per rule, so the draws of one API do not depend on the calls to another.
    draws: list[random.Random] = field(default_factory=list)


class Faults:
    """The fault rules in force and a count of the faults injected; safe to use from any thread.

    :param document: the rules to start with, as accepted by :meth:`replace`.
    """

    def __init__(self, document: Mapping[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._rules = _parse(document or {})
        self._injected: Counter[str] = Counter()
        self._listeners: list[Callable[[], None]] = []

    @classmethod
    def load(cls, path: Path) -> Faults:
        """Read a fault document from a JSON (or YAML) file.

        :raises InvalidFaultsError: when the file cannot be read or the document is malformed.
        """
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise InvalidFaultsError(f"cannot read fault file {str(path)!r}: {error}") from error
        try:
            return cls(document)
        except InvalidFaultsError as error:
            raise InvalidFaultsError(f"fault file {str(path)!r}: {error}") from None

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every change of the rules (outside any lock of this object)."""
        with self._lock:
            self._listeners.append(listener)

    def document(self) -> dict[str, Any]:
        """Return the rules in force as a fault document."""
        with self._lock:
            rules = self._rules
        return {"seed": rules.seed, "faults": [fault.to_document() for fault in rules.faults]}

    def replace(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """Put the rules of ``document`` in force instead of the current ones.

        :return: the document now in force, defaults filled in.
        :raises InvalidFaultsError: when the document is malformed; the rules are then unchanged.
        """
        self._swap(_parse(document))
        summary = self.summary()
        if summary:
            log.info("Faults set: %s", summary)
        else:
            log.info("Faults cleared")
        return self.document()

    def summary(self) -> str:
        """Say in a few words what each rule in force does; empty when none is."""
        with self._lock:
            faults = self._rules.faults
        return "; ".join(fault.describe() for fault in faults)

    def clear(self) -> dict[str, Any]:
        """Remove every rule; what is already held (log lines) keeps its schedule."""
        return self.replace({})

    def counts(self) -> dict[str, int]:
        """Return how many faults were injected, by ``<kind>`` or ``<kind>.<api>``."""
        with self._lock:
            return dict(sorted(self._injected.items()))

    def record(self, key: str, amount: int = 1) -> None:
        """Count ``amount`` faults injected under ``key``."""
        with self._lock:
            self._injected[key] += amount

    def for_call(self, api: str, jobs: Callable[[], Iterable[str]]) -> InjectedError | None:
        """Decide whether to answer this call with a fault, and count it when so.

        :param api: the call's ``<service>.<operation>``.
        :param jobs: returns the names of the jobs the call involves; only called when a rule
            for this API is scoped to jobs.
        """
        with self._lock:
            candidates = [
                (fault, draw)
                for fault, draw in zip(self._rules.faults, self._rules.draws, strict=True)
                if fault.api == api
            ]
        if not candidates:
            return None

        names: list[str] | None = None
        for fault, draw in candidates:
            if fault.job_name_prefix is not None:
                names = list(jobs()) if names is None else names
                if not any(fault.concerns(name) for name in names):
                    continue
            with self._lock:
                fires = draw.random() < fault.fraction
                if fires:
                    self._injected[f"{fault.kind}.{api}"] += 1
            if fires:
                service = api.partition(".")[0]
                status = _THROTTLE_STATUS[service] if fault.kind == "throttle" else fault.status
                return InjectedError(fault.kind, status)
        return None

    def log_delay(self, job_name: str) -> float:
        """Return the seconds by which a line of this job becomes readable late (0: none)."""
        fault = self._first("delay_logs", job_name)
        return fault.seconds if fault is not None and fault.seconds is not None else 0.0

    def hold_seconds(self, job_name: str) -> float | None:
        """Return how long this job is held in RUNNABLE: None when not, ``math.inf`` for ever."""
        fault = self._first("hold_runnable", job_name)
        if fault is None:
            return None
        return math.inf if fault.seconds is None else fault.seconds

    def exit_code(self, job_name: str, container: str) -> int | None:
        """Return the exit code to report for this container instead of its own, if any."""
        with self._lock:
            faults = self._rules.faults
        for fault in faults:
            if (
                fault.kind == "exit_code"
                and fault.container == container
                and fault.concerns(job_name)
            ):
                return fault.exit_code
        return None

    def _first(self, kind: str, job_name: str) -> Fault | None:
        with self._lock:
            faults = self._rules.faults
        return next((f for f in faults if f.kind == kind and f.concerns(job_name)), None)

    def _swap(self, rules: _Rules) -> None:
        with self._lock:
            self._rules = rules
            listeners = list(self._listeners)
        for listener in listeners:
            listener()


def error_answer(service: str, injected: InjectedError) -> tuple[str, list[tuple[str, str]], bytes]:
    """Return the status line, headers and body AWS gives for this fault in this service.

    Batch speaks rest-json (the code in ``x-amzn-ErrorType``), CloudWatch Logs JSON 1.1 (the code
    in ``__type``) and S3 its XML error document.
    """
    code, message = _ANSWERS[service][(injected.kind, injected.status)]
    message = f"{message} (local endpoint: fault injected)"
    status = f"{injected.status} {HTTPStatus(injected.status).phrase}"
    request_id = "00000000-0000-4000-8000-000000000000"
    if service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>local</HostId></Error>"
        ).encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
    elif service == "batch":
        body = json.dumps({"message": message}).encode()
        headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
        headers.append(("x-amzn-RequestId", request_id))
    else:
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1")]
        headers.append(("x-amzn-RequestId", request_id))
    headers.append(("Content-Length", str(len(body))))
    return status, headers, body


# Reading and checking a fault document


def _parse(document: Any) -> _Rules:
    if not isinstance(document, Mapping):
        raise InvalidFaultsError(
            f"a fault document is a JSON object with 'faults' (and optionally 'seed'); "
            f"got {type(document).__name__}"
        )
    unknown = sorted(set(document) - {"seed", "faults"})
    if unknown:
        raise InvalidFaultsError(f"unknown field(s) {unknown}; accepted: 'seed', 'faults'")
    seed = document.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidFaultsError(f"'seed' must be an integer or null, got {seed!r}")
    entries = document.get("faults") or []
    if not isinstance(entries, list):
        raise InvalidFaultsError(f"'faults' must be a list of rules, got {type(entries).__name__}")

    faults = [_rule(index, entry) for index, entry in enumerate(entries)]
    # A seed gives each rule a generator of its own, derived from the seed and its position.
    draws = [
        random.Random(f"{seed}:{index}") if seed is not None else random.Random()
        for index in range(len(faults))
    ]
    return _Rules(seed, faults, draws)


def _rule(index: int, entry: Any) -> Fault:
    where = f"faults[{index}]"
    if not isinstance(entry, Mapping):
        raise InvalidFaultsError(f"{where} must be an object, got {entry!r}")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise InvalidFaultsError(f"{where}.kind is {kind!r}; expected one of {list(KINDS)}")
    missing = [name for name in _REQUIRED[kind] if name not in entry]
    if missing:
        raise InvalidFaultsError(f"{where} ({kind}) lacks {missing}")
    allowed = {"kind", *_REQUIRED[kind], *_OPTIONAL[kind]}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise InvalidFaultsError(
            f"{where} ({kind}) has unknown field(s) {unknown}; accepted: {sorted(allowed)}"
        )

    values = {name: _check(where, name, value) for name, value in entry.items() if name != "kind"}
    if kind == "delay_logs" and values["seconds"] is None:
        raise InvalidFaultsError(f"{where}.seconds is null; expected a number above 0")
    if kind == "error" and values.get("status", 500) not in _ERROR_STATUSES:
        raise InvalidFaultsError(
            f"{where}.status is {values['status']!r}; expected one of {list(_ERROR_STATUSES)}"
        )
    return Fault(kind=kind, **values)


def _check(where: str, name: str, value: Any) -> Any:
    """Return ``value`` if it suits field ``name``; raise naming what is accepted otherwise."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "fraction" and not (number and 0 <= value <= 1):
        raise InvalidFaultsError(f"{where}.fraction is {value!r}; expected a number from 0 to 1")
    if name == "seconds" and value is not None and not (number and 0 < value < math.inf):
        raise InvalidFaultsError(f"{where}.seconds is {value!r}; expected a number above 0")
    if name in ("status", "exit_code") and (not number or value != int(value)):
        raise InvalidFaultsError(f"{where}.{name} is {value!r}; expected an integer")
    if name == "exit_code" and not 0 <= value <= 255:
        raise InvalidFaultsError(f"{where}.exit_code is {value!r}; expected 0 to 255")
    if name in ("job_name_prefix", "container") and not (isinstance(value, str) and value):
        raise InvalidFaultsError(f"{where}.{name} is {value!r}; expected a non-empty string")
    if name == "api":
        _check_api(where, value)
    return int(value) if name in ("status", "exit_code") else value


def _check_api(where: str, api: Any) -> None:
    service, _, operation = api.partition(".") if isinstance(api, str) else ("", "", "")
    if service not in _ANSWERS:
        raise InvalidFaultsError(
            f"{where}.api is {api!r}; expected '<service>.<operation>' with service one of "
            f"{sorted(_ANSWERS)}, such as 'logs.GetLogEvents' or 's3.PUT'"
        )
    known = _S3_METHODS if service == "s3" else _operations(service)
    if operation not in known:
        if service == "s3":
            hint = f"one of {list(_S3_METHODS)}"
        else:
            hint = f"an operation of botocore's {service} model"
            close = difflib.get_close_matches(str(operation), sorted(known), n=1)
            hint += f"; did you mean {service}.{close[0]}?" if close else ""
        raise InvalidFaultsError(f"{where}.api is {api!r}: {operation!r} is not {hint}")


@functools.cache
def _operations(service: str) -> frozenset[str]:
    model = botocore.session.get_session().get_service_model(service)
    return frozenset(model.operation_names)
