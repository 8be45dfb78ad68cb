"""The whole path through Airflow: ``airflow dags test`` of the example DAG, local endpoint."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

import pytest

from tests.support import BIN


@pytest.mark.e2e
def test_daily_export_through_airflow_dags_test(endpoint, airflow_env):
    run = subprocess.run(
        [str(BIN / "airflow"), "dags", "test", "flights_daily_export", "2013-01-01"],
        env=airflow_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]

    # Both containers' lines reach the task log, each marked with its container.
    assert re.search(r"\[main-app\] .*serving 336776 flights", output), output[-4000:]
    assert re.search(r"\[data-pipeline\] .*done: 842 rows", output), output[-4000:]

    submitted = re.search(r"Submitted Batch job (\S+) \(([0-9a-f-]{36})\)", output)
    assert submitted, output[-4000:]
    job = endpoint.client("batch").describe_jobs(jobs=[submitted.group(2)])["jobs"][0]
    assert job["status"] == "SUCCEEDED"
    exit_codes = {
        c["name"]: c["exitCode"] for c in job["ecsProperties"]["taskProperties"][0]["containers"]
    }
    assert exit_codes["data-pipeline"] == 0

    # The day's rows, read back from S3: the dataset's own count for New York's 2013-01-01.
    s3 = endpoint.client("s3")
    prefix = "flights/date=2013-01-01/"
    manifest = json.loads(
        s3.get_object(Bucket="sidecar-exports", Key=f"{prefix}manifest.json")["Body"].read()
    )
    data = s3.get_object(Bucket="sidecar-exports", Key=manifest["data_key"])["Body"].read()
    assert manifest["row_count"] == 842
    assert len(data.splitlines()) == 842
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert {json.loads(line)["day"] for line in data.splitlines()} == {1}
