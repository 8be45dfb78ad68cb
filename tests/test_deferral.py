"""Deferral you can trust, proven through the local endpoint: logs, failures, re-attaching."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_sidecar_batch.exceptions import (
    BatchJobFailedError,
    BatchJobTimeoutError,
    SubmitRequestError,
)
from airflow_sidecar_batch.operators import SidecarBatchOperator
from airflow_sidecar_batch.triggers import SidecarBatchJobTrigger
from tests.support import (
    PROGRAMS,
    ROOT,
    connection_json,
    stand_in_definition,
    start_program_endpoint,
    stop_endpoint,
)

CONN_ID = "sidecar_deferral_test"


def make_operator(definition_file: str, job_name: str) -> SidecarBatchOperator:
    return SidecarBatchOperator(
        task_id="export",
        job_definition=json.loads(Path(definition_file).read_text()),
        job_queue="sidecar-local",
        job_name=job_name,
        aws_conn_id=CONN_ID,
        waiter_delay=0.5,
        final_log_wait=0.5,
    )


def make_context(run_id: str) -> dict:
    ti = SimpleNamespace(
        dag_id="deferral", task_id="export", run_id=run_id, map_index=-1, xcom_push=lambda **_: None
    )
    return {"ti": ti}


async def first_event(trigger: SidecarBatchJobTrigger) -> dict:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the trigger ended without an event")


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    running = start_program_endpoint(tmp_path_factory.mktemp("deferral"), "app", "chatty")
    yield running
    stop_endpoint(running)


@pytest.fixture
def connection(local, monkeypatch):
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", connection_json(local.url))
    return CONN_ID


def connection_client(conn_id: str, service: str):
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=conn_id, client_type=service).conn


def defer(operator: SidecarBatchOperator, context: dict) -> SidecarBatchJobTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    return deferred.value.trigger


def container_lines(output: str, container: str) -> list[str]:
    """The lines the task log shows for one container, in the order shown."""
    # Airflow's log renderer pads the message and appends the logger's name in brackets: the
    # trigger's, or the operator's for lines read in execute_complete.
    pattern = re.compile(rf"\[{re.escape(container)}\] (.*?)\s+\[airflow[._]")
    return pattern.findall(output)


def put_faults(local, document: dict) -> None:
    request = urllib.request.Request(
        f"{local.url}/_local/faults", data=json.dumps(document).encode(), method="PUT"
    )
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def faults(local):
    yield lambda document: put_faults(local, document)
    put_faults(local, {"faults": []})


def test_every_line_once_and_in_order_from_a_deferred_wait(
    local, connection, faults, tmp_path, capfd
):
    faults(
        {
            "seed": 7,
            "faults": [{"kind": "throttle", "api": "logs.GetLogEvents", "fraction": 0.3}],
        }
    )
    throttled_before = local.stats().get("faults", {}).get("throttle.logs.GetLogEvents", 0)
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(stand_in_definition("chatty")))
    operator = make_operator(str(path), "chatty")
    context = make_context("run-lines")

    trigger = defer(operator, context)
    event = asyncio.run(first_event(trigger))
    result = operator.execute_complete(context, event)

    output = capfd.readouterr().out
    (stream,) = [s for s in event["logs"]["streams"] if s["container"] == "data-pipeline"]
    stamps = [
        e["timestamp"]
        for e in connection_client(connection, "logs").get_log_events(
            logGroupName=stream["group"],
            logStreamName=stream["name"],
            startFromHead=True,
            limit=10000,
        )["events"]
    ]
    assert result["status"] == "SUCCEEDED"
    assert max(stamps.count(stamp) for stamp in stamps) >= 4  # lines that share a millisecond
    throttled = local.stats()["faults"]["throttle.logs.GetLogEvents"] - throttled_before
    assert throttled > 0  # botocore retried them; no line was lost or repeated
    assert container_lines(output, "data-pipeline") == [f"line {n:05d}" for n in range(2000)]
    assert container_lines(output, "main-app") == ["app: up"]


def test_a_failed_pipeline_explains_itself(connection, tmp_path):
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(stand_in_definition("failing", {"LINES": "30", "CODE": "3"})))
    operator = make_operator(str(path), "failing")
    context = make_context("run-failing")

    event = asyncio.run(first_event(defer(operator, context)))
    with pytest.raises(BatchJobFailedError) as failed:
        operator.execute_complete(context, event)

    message = str(failed.value)
    assert "data-pipeline: essential, exit code 3" in message
    assert (
        "main-app: non-essential, stopped with the task when the essential container ended (normal)"
        in message
    )
    assert message.rstrip().endswith("    line 00029")
    assert "line 00010" in message  # the last twenty lines, not only the very last


def test_a_retry_after_the_worker_died_attaches_to_the_submitted_job(
    local, connection, faults, tmp_path
):
    # Held in RUNNABLE until the retry has attached, so it cannot finish before the retry looks.
    faults({"faults": [{"kind": "hold_runnable", "job_name_prefix": "retry"}]})
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(stand_in_definition("retry", {"LINES": "8"})))
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    died = subprocess.run(
        [sys.executable, str(PROGRAMS / "submit_and_die.py"), str(path), "retry", "run-retry"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert died.returncode == 137, died.stderr[-2000:]
    submitted = json.loads(died.stdout.strip().splitlines()[-1])["jobId"]

    operator = make_operator(str(path), "retry")
    context = make_context("run-retry")
    trigger = defer(operator, context)
    put_faults(local, {"faults": []})
    result = operator.execute_complete(context, asyncio.run(first_event(trigger)))

    batch = local.client("batch")
    jobs = batch.list_jobs(
        jobQueue="sidecar-local", filters=[{"name": "JOB_NAME", "values": ["retry-*"]}]
    )["jobSummaryList"]
    assert trigger.job_id == submitted
    assert [job["jobId"] for job in jobs] == [submitted]
    assert result["job_id"] == submitted

    # Once the job SUCCEEDED, another try succeeds with it and submits nothing.
    again = make_operator(str(path), "retry").execute(context)
    jobs = batch.list_jobs(
        jobQueue="sidecar-local", filters=[{"name": "JOB_NAME", "values": ["retry-*"]}]
    )["jobSummaryList"]
    assert again["job_id"] == submitted
    assert len(jobs) == 1


def test_a_job_held_in_runnable_past_its_queue_deadline_is_terminated(
    local, connection, faults, tmp_path
):
    faults({"faults": [{"kind": "hold_runnable", "job_name_prefix": "held"}]})
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(stand_in_definition("held", {"LINES": "4"})))
    operator = make_operator(str(path), "held")
    operator.queue_timeout = timedelta(seconds=2)
    context = make_context("run-held")

    trigger = defer(operator, context)
    event = asyncio.run(first_event(trigger))
    with pytest.raises(BatchJobTimeoutError, match="still RUNNABLE at its queue deadline") as late:
        operator.execute_complete(context, event)

    job = local.client("batch").describe_jobs(jobs=[trigger.job_id])["jobs"][0]
    assert "compute environments of job queue 'sidecar-local'" in str(late.value)
    assert job["status"] == "FAILED"
    assert "queue deadline" in job["statusReason"]


def test_a_bad_override_is_refused_before_any_aws_call(local, connection, tmp_path):
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(stand_in_definition("refused")))
    operator = make_operator(str(path), "refused")
    operator.container_overrides = {"data-pipelin": {"environment": {"LINES": "1"}}}
    before = {k: v for k, v in local.stats()["calls"].items() if k.startswith("batch.")}

    with pytest.raises(SubmitRequestError, match="data-pipelin") as refused:
        operator.execute(make_context("run-refused"))

    after = {k: v for k, v in local.stats()["calls"].items() if k.startswith("batch.")}
    assert "data-pipeline" in str(refused.value)  # the containers it does have
    assert after == before


def test_polls_that_fail_for_a_while_do_not_fail_the_task(local, connection, faults, tmp_path):
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(stand_in_definition("patient", {"LINES": "8"})))
    operator = make_operator(str(path), "patient")
    # One attempt per call, so the injected throttling reaches the trigger at once.
    operator.botocore_config = {"retries": {"mode": "standard", "max_attempts": 1}}
    context = make_context("run-patient")
    trigger = defer(operator, context)
    throttle = {"kind": "throttle", "api": "batch.DescribeJobs", "fraction": 1.0}
    faults({"faults": [{**throttle, "job_name_prefix": "patient"}]})
    before = local.stats().get("faults", {}).get("throttle.batch.DescribeJobs", 0)
    lift = threading.Timer(3.0, put_faults, args=(local, {"faults": []}))
    lift.start()
    try:
        event = asyncio.run(first_event(trigger))
    finally:
        lift.cancel()

    throttled = local.stats()["faults"]["throttle.batch.DescribeJobs"] - before
    assert throttled >= 2
    assert operator.execute_complete(context, event)["status"] == "SUCCEEDED"


def test_a_worker_side_wait_that_times_out_terminates_its_job(
    local, connection, tmp_path, monkeypatch
):
    from airflow.sdk.exceptions import AirflowTaskTimeout

    from airflow_sidecar_batch import operators

    path = tmp_path / "definition.json"
    path.write_text(
        json.dumps(stand_in_definition("timeout", {"LINES": "60", "LINE_INTERVAL": "1"}))
    )
    operator = make_operator(str(path), "timeout")
    operator.deferrable = False

    def timer_fires(seconds: float) -> None:
        # Airflow's execution_timeout raises in the worker wherever it waits: here, a sleep.
        raise AirflowTaskTimeout("Timeout, PID: 1")

    with monkeypatch.context() as patched:
        patched.setattr(operators.time, "sleep", timer_fires)
        with pytest.raises(AirflowTaskTimeout):
            operator.execute(make_context("run-timeout"))

    batch = local.client("batch")
    (summary,) = batch.list_jobs(
        jobQueue="sidecar-local", filters=[{"name": "JOB_NAME", "values": ["timeout-*"]}]
    )["jobSummaryList"]
    deadline = time.monotonic() + 30
    while (job := batch.describe_jobs(jobs=[summary["jobId"]])["jobs"][0])["status"] != "FAILED":
        assert time.monotonic() < deadline, job["status"]
        time.sleep(0.2)
    assert "stopped waiting for it (AirflowTaskTimeout)" in job["statusReason"]
