"""The data-pipeline program, run as a subprocess against the real main-app and a moto S3 server."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from .conftest import PIPELINE, RunningApp

BUCKET = "flights-exports"
NEW_YEAR = {"start": "2013-01-01T05:00:00+00:00", "end": "2013-01-02T05:00:00+00:00"}


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """A moto S3 server on a free loopback port, with the test bucket."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    s3_client(url).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def s3_client(url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A folder of the bucket that belongs to one test."""
    return f"exports/{request.node.name}/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pipeline_env(s3_url: str, api_base_url: str, **settings: str) -> dict[str, str]:
    """The subprocess environment: the test process's own, pointed at the test servers."""
    return {
        **os.environ,
        "API_BASE_URL": api_base_url,
        "AWS_ENDPOINT_URL": s3_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        **settings,
    }


def run_pipeline(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PIPELINE), *args], env=env, capture_output=True, text=True, timeout=120
    )


def payload(prefix: str, **fields: Any) -> str:
    return json.dumps({"window": NEW_YEAR, "output_uri": f"s3://{BUCKET}/{prefix}", **fields})


def read_object(s3_url: str, key: str) -> bytes:
    return s3_client(s3_url).get_object(Bucket=BUCKET, Key=key)["Body"].read()


def keys_under(s3_url: str, prefix: str) -> list[str]:
    listing = s3_client(s3_url).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_exports_a_day_with_its_manifest(main_app: RunningApp, s3_url: str, prefix: str) -> None:
    result = run_pipeline(pipeline_env(s3_url, main_app.url), payload(prefix))

    assert result.returncode == 0, result.stderr
    manifest = json.loads(read_object(s3_url, prefix + "manifest.json"))
    data = read_object(s3_url, manifest["data_key"])
    assert manifest["row_count"] == 842
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["data_key"] == prefix + "flights.ndjson"
    assert manifest["window"] == NEW_YEAR
    assert manifest["origin"] is None
    assert manifest["created_at"].endswith("Z")
    rows = [json.loads(line) for line in data.decode().splitlines()]
    assert len(rows) == 842
    assert rows[0]["scheduled_departure"] == "2013-01-01T10:15:00Z"


def test_reports_progress_on_stdout(main_app: RunningApp, s3_url: str, prefix: str) -> None:
    result = run_pipeline(pipeline_env(s3_url, main_app.url), payload(prefix))
    lines = result.stdout.splitlines()

    assert all(line.startswith("data-pipeline: ") for line in lines)
    assert f"data-pipeline: waiting for {main_app.url}/health" in result.stdout
    assert "data-pipeline: page 1: 842 rows" in lines
    assert f"data-pipeline: wrote s3://{BUCKET}/{prefix}manifest.json" in lines
    assert lines[-1].startswith("data-pipeline: done: 842 rows")
    assert result.stderr == ""


def test_origin_limits_the_export(main_app: RunningApp, s3_url: str, prefix: str) -> None:
    _, page = main_app.get(
        "/flights?start=2013-01-01T05:00:00Z&end=2013-01-02T05:00:00Z&origin=JFK&limit=5000"
    )

    result = run_pipeline(pipeline_env(s3_url, main_app.url), payload(prefix, origin="JFK"))

    assert result.returncode == 0, result.stderr
    manifest = json.loads(read_object(s3_url, prefix + "manifest.json"))
    rows = read_object(s3_url, prefix + "flights.ndjson").decode().splitlines()
    assert manifest["origin"] == "JFK"
    assert manifest["row_count"] == page["count"] == len(rows)
    assert {json.loads(row)["origin"] for row in rows} == {"JFK"}


def test_rerun_replaces_the_export(main_app: RunningApp, s3_url: str, prefix: str) -> None:
    s3 = s3_client(s3_url)
    s3.put_object(Bucket=BUCKET, Key=prefix + "flights.ndjson", Body=b'{"stale": true}\n')
    s3.put_object(Bucket=BUCKET, Key=prefix + "manifest.json", Body=b'{"row_count": 1}')
    env = pipeline_env(s3_url, main_app.url)

    first = run_pipeline(env, payload(prefix))
    second = run_pipeline(env, payload(prefix))

    assert (first.returncode, second.returncode) == (0, 0)
    assert keys_under(s3_url, prefix) == [prefix + "flights.ndjson", prefix + "manifest.json"]
    manifest = json.loads(read_object(s3_url, prefix + "manifest.json"))
    data = read_object(s3_url, prefix + "flights.ndjson")
    assert manifest["row_count"] == data.count(b"\n") == 842
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ([], "expected one argument, the payload JSON; got 0"),
        (["{}", "{}"], "expected one argument, the payload JSON; got 2"),
        (["{"], "payload: not valid JSON: Expecting property name"),
        (["[]"], "payload: [] is not an object"),
        (['{"output_uri": "s3://b/p/"}'], "window: missing"),
        (
            ['{"window": {"start": "2013-01-01T05:00:00", "end": "2013-01-02T05:00:00Z"}}'],
            "window.start: '2013-01-01T05:00:00' has no UTC offset",
        ),
        (
            ['{"window": {"start": "2013-01-02T05:00:00Z", "end": "2013-01-01T05:00:00Z"}}'],
            "window.end: '2013-01-01T05:00:00Z' is not after window.start",
        ),
        (
            ['{"window": {"start": "2013-01-01T05:00:00Z", "end": 5}}'],
            "window.end: 5 is not an ISO 8601 instant",
        ),
        ([payload("x/", output_uri="/tmp/out/")], "output_uri: '/tmp/out/' is not an s3:// URI"),
        ([payload("x/", output_uri="s3://b/prefix")], "output_uri: 's3://b/prefix' must end with"),
        ([payload("x/", origin="BOS")], "origin: 'BOS' is not accepted; give one of EWR, JFK, LGA"),
        ([payload("x/", orign="JFK")], "payload.orign: unknown field"),
    ],
    ids=[
        "no-argument",
        "two-arguments",
        "not-json",
        "not-an-object",
        "missing-window",
        "naive-start",
        "end-before-start",
        "end-not-a-string",
        "output-not-s3",
        "output-not-a-folder",
        "unknown-origin",
        "misspelt-field",
    ],
)
def test_bad_payload_exits_2_with_one_line(args: list[str], match: str) -> None:
    result = run_pipeline(pipeline_env("http://127.0.0.1:9", "http://127.0.0.1:9"), *args)

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("data-pipeline: error: " + match)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SIDECAR_READY_RETRIES", "0"),
        ("SIDECAR_READY_INTERVAL_SECONDS", "soon"),
        ("SIDECAR_READY_TIMEOUT_SECONDS", "nan"),
        ("API_BASE_URL", "localhost:8080"),
    ],
    ids=["retries-zero", "interval-word", "timeout-nan", "base-url-without-scheme"],
)
def test_bad_setting_exits_2_naming_it(name: str, value: str) -> None:
    env = pipeline_env("http://127.0.0.1:9", "http://127.0.0.1:9", **{name: value})

    result = run_pipeline(env, payload("x/"))

    assert result.returncode == 2
    assert result.stderr.startswith(f"data-pipeline: error: {name}={value!r} is not")


def test_unreachable_app_exits_3_within_the_deadline(s3_url: str, prefix: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    settings = {"SIDECAR_READY_RETRIES": "3", "SIDECAR_READY_INTERVAL_SECONDS": "0.2"}

    started = time.monotonic()
    result = run_pipeline(pipeline_env(s3_url, url, **settings), payload(prefix))
    elapsed = time.monotonic() - started

    assert result.returncode == 3
    assert elapsed < 15
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"data-pipeline: error: {url}/health did not answer 2xx after 3 attempts over"
    )


def test_failed_run_leaves_no_manifest(s3_url: str, prefix: str) -> None:
    s3_client(s3_url).put_object(Bucket=BUCKET, Key=prefix + "manifest.json", Body=b"{}")
    url = f"http://127.0.0.1:{free_port()}"

    result = run_pipeline(pipeline_env(s3_url, url, SIDECAR_READY_RETRIES="1"), payload(prefix))

    assert result.returncode == 3
    assert keys_under(s3_url, prefix) == []


def test_missing_bucket_exits_5(main_app: RunningApp, s3_url: str) -> None:
    document = json.dumps({"window": NEW_YEAR, "output_uri": "s3://no-such-bucket/x/"})

    result = run_pipeline(pipeline_env(s3_url, main_app.url), document)

    assert result.returncode == 5
    assert result.stderr.startswith(
        "data-pipeline: error: could not delete s3://no-such-bucket/x/manifest.json: NoSuchBucket"
    )


class BrokenFlights(BaseHTTPRequestHandler):
    """Healthy, but every /flights request fails, as an app with a bug would."""

    def do_GET(self) -> None:
        healthy = self.path == "/health"
        body = b'{"status": "ok"}' if healthy else b'{"error": "boom: the table is gone"}'
        self.send_response(200 if healthy else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def broken_app_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BrokenFlights)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_app_error_exits_4_and_writes_nothing(
    broken_app_url: str, s3_url: str, prefix: str
) -> None:
    result = run_pipeline(pipeline_env(s3_url, broken_app_url), payload(prefix))

    assert result.returncode == 4
    assert "answered HTTP 500: boom: the table is gone" in result.stderr
    assert keys_under(s3_url, prefix) == []


def test_sigterm_stops_promptly_without_manifest(s3_url: str, prefix: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = pipeline_env(s3_url, url, SIDECAR_READY_RETRIES="600")
    process = subprocess.Popen(
        [sys.executable, str(PIPELINE), payload(prefix)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    # Wait for the condition, not a fixed time: the pipeline is polling the app.
    for line in process.stdout:
        if line.startswith("data-pipeline: waiting for"):
            break

    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 143
    assert time.monotonic() - started < 5
    assert stderr == "data-pipeline: error: stopped by SIGTERM before the export finished\n"
    assert keys_under(s3_url, prefix) == []
