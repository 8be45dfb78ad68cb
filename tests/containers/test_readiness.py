"""The readiness helper of the data-pipeline image, against a small in-test HTTP server."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .conftest import load_readiness

readiness = load_readiness()


class Health(BaseHTTPRequestHandler):
    """Answers each request with the next status of ``server.statuses``, then 200."""

    server: HealthServer

    def do_GET(self) -> None:
        self.server.requests += 1
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


class HealthServer(ThreadingHTTPServer):
    statuses: list[int]
    requests: int = 0


@pytest.fixture
def health() -> Iterator[HealthServer]:
    server = HealthServer(("127.0.0.1", 0), Health)
    server.statuses = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def url_of(server: HealthServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/health"


def test_defaults_match_the_documentation() -> None:
    settings = readiness.ReadinessSettings.from_environ({}, "http://localhost:8080/health")

    assert settings == readiness.ReadinessSettings(
        url="http://localhost:8080/health",
        interval_seconds=1.0,
        retries=60,
        start_period_seconds=0.0,
        timeout_seconds=2.0,
    )


def test_environment_overrides_every_default() -> None:
    environ = {
        "SIDECAR_READY_URL": "http://localhost:9000/ready",
        "SIDECAR_READY_INTERVAL_SECONDS": "0.5",
        "SIDECAR_READY_RETRIES": "10",
        "SIDECAR_READY_START_PERIOD_SECONDS": "3",
        "SIDECAR_READY_TIMEOUT_SECONDS": "1.5",
    }

    settings = readiness.ReadinessSettings.from_environ(environ, "http://unused/health")

    assert settings == readiness.ReadinessSettings("http://localhost:9000/ready", 0.5, 10, 3.0, 1.5)


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("SIDECAR_READY_RETRIES", "0", "set it to an integer >= 1"),
        ("SIDECAR_READY_RETRIES", "2.5", "set it to an integer >= 1"),
        ("SIDECAR_READY_INTERVAL_SECONDS", "-1", "set it to a number of seconds >= 0"),
        ("SIDECAR_READY_START_PERIOD_SECONDS", "inf", "set it to a number of seconds >= 0"),
        ("SIDECAR_READY_TIMEOUT_SECONDS", "0", "set it to a number of seconds >= 0.1"),
    ],
    ids=["retries-zero", "retries-fraction", "interval-negative", "start-infinite", "timeout-0"],
)
def test_invalid_setting_is_refused_with_its_name(name: str, value: str, match: str) -> None:
    expected = re.escape(f"{name}='{value}' is not accepted; {match}")
    with pytest.raises(readiness.SettingsError, match=f"^{expected}$"):
        readiness.ReadinessSettings.from_environ({name: value}, "http://localhost/health")


def test_waits_through_failures_until_2xx(health: HealthServer) -> None:
    health.statuses = [503, 503]
    settings = readiness.ReadinessSettings(url_of(health), interval_seconds=0.01, retries=5)

    readiness.wait_until_ready(settings)

    assert health.requests == 3


def test_gives_up_after_the_retries(health: HealthServer) -> None:
    health.statuses = [503] * 5
    settings = readiness.ReadinessSettings(url_of(health), interval_seconds=0.01, retries=3)

    with pytest.raises(
        readiness.NotReadyError, match=r"did not answer 2xx after 3 attempts over .* HTTP 503\)"
    ):
        readiness.wait_until_ready(settings)
    assert health.requests == 3


def test_attempts_in_the_start_period_do_not_count(health: HealthServer) -> None:
    now = [0.0]
    settings = readiness.ReadinessSettings(
        url_of(health), interval_seconds=1.0, retries=2, start_period_seconds=3.0
    )
    health.statuses = [500] * 10

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(readiness.NotReadyError, match="after 5 attempts"):
        readiness.wait_until_ready(settings, sleep=sleep, clock=lambda: now[0])

    # Attempts at 0, 1 and 2 s fall in the start period; those at 3 and 4 s use up the retries.
    assert health.requests == 5


def test_an_app_ready_within_the_start_period_is_used_at_once(health: HealthServer) -> None:
    now = [0.0]
    settings = readiness.ReadinessSettings(
        url_of(health), interval_seconds=1.0, retries=2, start_period_seconds=30.0
    )
    health.statuses = [500]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    waited = readiness.wait_until_ready(settings, sleep=sleep, clock=lambda: now[0])

    assert waited == 1.0
    assert health.requests == 2
