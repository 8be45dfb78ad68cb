"""Deferral with the real scheduler, api-server and triggerer: stopping a job, restarting."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from scripts.stack import AirflowStack
from tests.support import connection_json, start_program_endpoint, stop_endpoint

DAG_ID = "deferral_stack"
WAITER_DELAY = 2  # the DAG's


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    running = start_program_endpoint(tmp_path_factory.mktemp("stack-endpoint"), "app", "chatty")
    yield running
    stop_endpoint(running)


@pytest.fixture(scope="module")
def stack(local, tmp_path_factory):
    home = tmp_path_factory.mktemp("stack-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).parent / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SIDECAR_BATCH": connection_json(local.url),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    with AirflowStack(env, home / "logs") as running:
        running.unpause(DAG_ID)
        yield running


def wait_for(what: str, check, timeout: float = 120.0, stack: AirflowStack | None = None):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if stack is not None:
            stack.check_alive()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def start_run(stack: AirflowStack, name: str, lines: int, interval: float) -> str:
    run = stack.api(
        "POST",
        f"/api/v2/dags/{DAG_ID}/dagRuns",
        {"logical_date": None, "conf": {"name": name, "lines": lines, "interval": interval}},
    )
    return run["dag_run_id"]


def task(stack: AirflowStack, run_id: str) -> dict:
    return stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/export")


def running_job(local, name: str) -> dict | None:
    batch = local.client("batch")
    listed = batch.list_jobs(
        jobQueue="sidecar-local", filters=[{"name": "JOB_NAME", "values": [f"stack-{name}-*"]}]
    )["jobSummaryList"]
    jobs = batch.describe_jobs(jobs=[j["jobId"] for j in listed])["jobs"] if listed else []
    return next((j for j in jobs if j["status"] == "RUNNING"), None)


def job(local, job_id: str) -> dict:
    return local.client("batch").describe_jobs(jobs=[job_id])["jobs"][0]


@pytest.mark.e2e
def test_marking_the_deferred_task_failed_terminates_its_job(stack, local):
    run_id = start_run(stack, "killed", lines=300, interval=0.5)
    wait_for("the task to defer", lambda: task(stack, run_id)["state"] == "deferred", stack=stack)
    running = wait_for("the job to run", lambda: running_job(local, "killed"), stack=stack)
    # Only a running trigger hears of the kill: Airflow drops a trigger that no triggerer has
    # picked up yet without calling anything of it (see the README's known limits).
    wait_for("the trigger to forward lines", lambda: task_lines(stack, run_id), stack=stack)

    stack.api(
        "PATCH",
        f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/export",
        {"new_state": "failed"},
    )
    marked = time.monotonic()
    ended = wait_for(
        "the job to be terminated",
        lambda: (
            job(local, running["jobId"])
            if job(local, running["jobId"])["status"] == "FAILED"
            else None
        ),
        timeout=60,
    )
    took = time.monotonic() - marked

    assert "was marked failed or cleared" in ended["statusReason"]
    assert f"{DAG_ID}.export" in ended["statusReason"]
    # Within one poll interval, plus the triggerer's own round trip to notice the change.
    assert took < WAITER_DELAY + 10, took


@pytest.mark.e2e
def test_a_triggerer_restart_leaves_the_job_running_and_repeats_no_line(stack, local):
    lines = 40
    run_id = start_run(stack, "restarted", lines=lines, interval=0.5)
    running = wait_for("the job to run", lambda: running_job(local, "restarted"), stack=stack)
    wait_for("some lines to be forwarded", lambda: len(task_lines(stack, run_id)) >= 5)

    stack.restart("triggerer")
    finished = wait_for(
        "the task to finish",
        lambda: task(stack, run_id)["state"] in ("success", "failed") and task(stack, run_id),
        timeout=180,
        stack=stack,
    )

    assert finished["state"] == "success"
    assert job(local, running["jobId"])["status"] == "SUCCEEDED"
    assert task_lines(stack, run_id) == [f"line {n:05d}" for n in range(lines)]


def task_lines(stack: AirflowStack, run_id: str) -> list[str]:
    """The pipeline's lines as the task log shows them (worker and triggerer logs merged)."""
    answer = stack.api(
        "GET",
        f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/export/logs/1?full_content=true",
    )
    content = answer.get("content", [])
    events = [
        entry.get("event", "") if isinstance(entry, dict) else str(entry) for entry in content
    ]
    return [m.group(1) for e in events if (m := re.match(r"\[data-pipeline\] (.*)$", e))]
