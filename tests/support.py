"""Helpers for tests that run the real local endpoint as users start it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Endpoint:
    """A running ``sidecar-batch local`` process and clients for it."""

    def __init__(self, port: int, process: subprocess.Popen, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = process
        self.log = log

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/_local/stats", timeout=5) as answer:
            return json.load(answer)


def start_endpoint(log: Path, *extra: str) -> Endpoint:
    port = free_port()
    command = [
        str(BIN / "sidecar-batch"),
        "local",
        "--port",
        str(port),
        "--images",
        str(ROOT / "containers" / "images.yaml"),
        "--bucket",
        "sidecar-exports",
        *extra,
    ]
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_local/health", timeout=1).close()
            return Endpoint(port, process, log)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"local endpoint did not start:\n{log.read_text()}")
            time.sleep(0.1)


def stop_endpoint(endpoint: Endpoint) -> None:
    endpoint.process.terminate()
    try:
        endpoint.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        endpoint.process.kill()


PROGRAMS = ROOT / "tests" / "programs"


def connection_json(url: str) -> str:
    """An Airflow AWS connection (``AIRFLOW_CONN_*`` value) that points at a local endpoint."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "local",
            # Any word here is masked in logs: pick one no log line would otherwise contain.
            "password": "local-dummy-secret",
            "extra": {"endpoint_url": url, "region_name": "us-east-1"},
        }
    )


def start_program_endpoint(folder: Path, *names: str) -> Endpoint:
    """Start an endpoint that runs image ``test/<name>`` as ``tests/programs/<name>.py``."""
    images = {
        f"test/{name}": {"entrypoint": ["{python}", str(PROGRAMS / f"{name}.py")], "command": []}
        for name in names
    }
    (folder / "images.yaml").write_text(json.dumps({"images": images}))
    return start_endpoint(folder / "endpoint.log", "--images", str(folder / "images.yaml"))


def stand_in_definition(name: str, pipeline_env: dict[str, str] | None = None) -> dict:
    """A two-container job of the stand-ins: ``test/app`` and ``test/chatty`` (the essential)."""
    container = {
        "resourceRequirements": [
            {"type": "VCPU", "value": "0.25"},
            {"type": "MEMORY", "value": "1024"},
        ],
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-stream-prefix": "t"}},
    }
    environment = [{"name": k, "value": v} for k, v in (pipeline_env or {}).items()]
    return {
        "jobDefinitionName": name,
        "type": "container",
        "platformCapabilities": ["FARGATE"],
        "ecsProperties": {
            "taskProperties": [
                {
                    "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
                    "containers": [
                        {
                            **container,
                            "name": "main-app",
                            "image": "test/app:1",
                            "essential": False,
                        },
                        {
                            **container,
                            "name": "data-pipeline",
                            "image": "test/chatty:1",
                            "environment": environment,
                            "dependsOn": [{"containerName": "main-app", "condition": "START"}],
                        },
                    ],
                }
            ]
        },
    }
