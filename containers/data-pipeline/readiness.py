"""Wait until a sidecar's HTTP health URL answers, with a deadline.

AWS Batch can only start a container after another one has *started* (``dependsOn`` condition
``START``); it has no ``HEALTHY`` condition. A dependent container therefore waits for its sidecar
itself, with the settings an ECS ``healthCheck`` would have carried, read from the environment:

``SIDECAR_READY_URL``
    the URL to poll (default: the API base URL + ``/health``); any 2xx answer means ready.
``SIDECAR_READY_INTERVAL_SECONDS``
    seconds between attempts (default 1).
``SIDECAR_READY_RETRIES``
    attempts before giving up (default 60).
``SIDECAR_READY_START_PERIOD_SECONDS``
    a grace period from the start (default 0): attempts are made during it, as ECS makes them,
    but failures in it do not count against the retries.
``SIDECAR_READY_TIMEOUT_SECONDS``
    timeout of each attempt (default 2).

Only the standard library is used, so any image can carry this file.
"""

from __future__ import annotations

import logging
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger("data_pipeline.readiness")


class SettingsError(ValueError):
    """Raised when a SIDECAR_READY_* variable holds a value that is not accepted."""


class NotReadyError(RuntimeError):
    """Raised when the health URL did not answer 2xx within the allowed attempts."""


@dataclass(frozen=True)
class ReadinessSettings:
    """How to wait for a sidecar; see the module docstring for each setting."""

    url: str
    interval_seconds: float = 1.0
    retries: int = 60
    start_period_seconds: float = 0.0
    timeout_seconds: float = 2.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], default_url: str) -> ReadinessSettings:
        """Read the settings from ``environ``, falling back to the defaults."""
        return cls(
            url=environ.get("SIDECAR_READY_URL") or default_url,
            interval_seconds=_setting(environ, "SIDECAR_READY_INTERVAL_SECONDS", 1.0),
            retries=int(_setting(environ, "SIDECAR_READY_RETRIES", 60, integer=True, minimum=1)),
            start_period_seconds=_setting(environ, "SIDECAR_READY_START_PERIOD_SECONDS", 0.0),
            timeout_seconds=_setting(environ, "SIDECAR_READY_TIMEOUT_SECONDS", 2.0, minimum=0.1),
        )


def _setting(
    environ: Mapping[str, str],
    name: str,
    default: float,
    *,
    integer: bool = False,
    minimum: float = 0.0,
) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value: float = int(raw) if integer else float(raw)
    except ValueError:
        value = math.nan
    # The chained comparison is False for NaN too, so "nan" is refused like any other word.
    if not minimum <= value < math.inf:
        kind = "an integer" if integer else "a number of seconds"
        raise SettingsError(f"{name}={raw!r} is not accepted; set it to {kind} >= {minimum:g}")
    return value


def probe(url: str, timeout_seconds: float) -> str | None:
    """Request ``url`` once; return None when it answered 2xx, else what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds) as response:
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return str(reason) or type(reason).__name__


def wait_until_ready(
    settings: ReadinessSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Poll ``settings.url`` until it answers 2xx; return the seconds waited.

    :raises NotReadyError: after ``settings.retries`` failed attempts, saying the URL, the number of
        attempts, the seconds waited and the last failure.
    """
    began = clock()
    log.info(
        "waiting for %s (start period %g s, up to %d attempts every %g s)",
        settings.url,
        settings.start_period_seconds,
        settings.retries,
        settings.interval_seconds,
    )
    grace_ends = began + settings.start_period_seconds
    failure = "no attempt made"
    attempt = failures = 0
    while True:
        attempt += 1
        attempt_began = clock()
        failure = probe(settings.url, settings.timeout_seconds) or ""
        if not failure:
            waited = clock() - began
            log.info("%s answered after %.1f s (attempt %d)", settings.url, waited, attempt)
            return waited
        log.debug("attempt %d: %s", attempt, failure)
        # As in ECS, a failure within the start period does not count against the retries.
        if attempt_began >= grace_ends:
            failures += 1
            if failures >= settings.retries:
                break
        # Keep a steady cadence: a slow attempt eats into the pause that follows it.
        sleep(max(0.0, settings.interval_seconds - (clock() - attempt_began)))

    raise NotReadyError(
        f"{settings.url} did not answer 2xx after {attempt} attempts over "
        f"{clock() - began:.1f} s (last: {failure}); if the app needs longer to start, raise "
        "SIDECAR_READY_RETRIES, SIDECAR_READY_INTERVAL_SECONDS or "
        "SIDECAR_READY_START_PERIOD_SECONDS"
    )
