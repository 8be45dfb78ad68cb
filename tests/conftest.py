"""Fixtures shared by the suite: a real local endpoint and an Airflow home that points at it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def endpoint(tmp_path_factory) -> Iterator[Endpoint]:
    """One local endpoint for the session, started through the real command line."""
    running = start_endpoint(tmp_path_factory.mktemp("endpoint") / "endpoint.log")
    yield running
    stop_endpoint(running)


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory, endpoint) -> dict[str, str]:
    """Environment for Airflow commands: a migrated home, the example DAGs, the connection."""
    home = tmp_path_factory.mktemp("airflow-home")
    connection = {
        "conn_type": "aws",
        "login": "local",
        "password": "local",
        "extra": {"endpoint_url": endpoint.url, "region_name": "us-east-1"},
    }
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SIDECAR_BATCH": json.dumps(connection),
    }
    subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True
    )
    return env
