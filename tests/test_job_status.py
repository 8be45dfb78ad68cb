from __future__ import annotations

import pytest

from airflow_sidecar_batch.job_status import JobStatus, JobStep, LogStream, job_step


def _job(status: str, **extra):
    return {
        "jobId": "j-1",
        "jobName": "flights-export-2013-01-01",
        "status": status,
        "ecsProperties": {
            "taskProperties": [
                {
                    "containers": [
                        {
                            "name": "main-app",
                            "essential": False,
                            "logConfiguration": {
                                "logDriver": "awslogs",
                                "options": {
                                    "awslogs-group": "/custom",
                                    "awslogs-region": "eu-west-1",
                                },
                            },
                        },
                        {"name": "data-pipeline"},
                    ]
                }
            ]
        },
        **extra,
    }


@pytest.mark.parametrize(
    ("status", "finished", "succeeded"),
    [
        ("SUBMITTED", False, False),
        ("RUNNABLE", False, False),
        ("STARTING", False, False),
        ("RUNNING", False, False),
        ("SUCCEEDED", True, True),
        ("FAILED", True, False),
    ],
    ids=lambda v: str(v),
)
def test_status_decides_whether_to_keep_waiting(status, finished, succeeded):
    step = job_step(_job(status))

    assert step.status is JobStatus(status)
    assert step.finished is finished
    assert step.succeeded is succeeded


def test_no_log_stream_before_a_container_runs():
    assert job_step(_job("STARTING")).log_streams == ()


def test_log_streams_follow_each_containers_own_group():
    job = _job("RUNNING")
    containers = job["ecsProperties"]["taskProperties"][0]["containers"]
    containers[0]["logStreamName"] = "flights/main-app/t1"
    containers[1]["logStreamName"] = "flights/data-pipeline/t1"

    streams = job_step(job).log_streams

    assert streams == (
        LogStream("main-app", "/custom", "flights/main-app/t1", "eu-west-1"),
        LogStream("data-pipeline", "/aws/batch/job", "flights/data-pipeline/t1", None),
    )


def test_earlier_attempts_keep_their_streams():
    job = _job("RUNNING")
    job["attempts"] = [
        {"taskProperties": [{"containers": [{"name": "data-pipeline", "logStreamName": "old"}]}]}
    ]
    job["ecsProperties"]["taskProperties"][0]["containers"][1]["logStreamName"] = "new"

    names = [s.name for s in job_step(job).log_streams]

    assert names == ["old", "new"]


def test_failure_message_names_each_container_essential_first():
    job = _job("FAILED", statusReason="Essential container in task exited")
    containers = job["ecsProperties"]["taskProperties"][0]["containers"]
    containers[0].update(exitCode=143, reason="stopped with the task")
    containers[1].update(exitCode=3)
    last = {"data-pipeline": ["page 1: 842 rows", "error: S3 refused"], "main-app": ["stopped"]}

    message = job_step(job).failure_message(last)

    assert message.splitlines() == [
        "Batch job flights-export-2013-01-01 (j-1) FAILED: Essential container in task exited",
        "  data-pipeline: essential, exit code 3",
        "  main-app: non-essential, stopped with the task when the essential container ended "
        "(normal)",
        "Last lines of data-pipeline:",
        "    page 1: 842 rows",
        "    error: S3 refused",
    ]


def test_a_non_essential_container_that_failed_on_its_own_is_not_a_normal_stop():
    job = _job("FAILED", statusReason="Essential container in task exited")
    containers = job["ecsProperties"]["taskProperties"][0]["containers"]
    containers[0].update(exitCode=1, reason="crashed")
    containers[1].update(exitCode=3)

    message = job_step(job).failure_message()

    assert "  main-app: non-essential, exit code 1 (crashed)" in message.splitlines()


def test_event_round_trip_keeps_the_outcome():
    job = _job("FAILED", statusReason="boom")
    job["ecsProperties"]["taskProperties"][0]["containers"][1]["exitCode"] = 1
    step = job_step(job)

    rebuilt = JobStep.from_event(step.to_event())

    assert rebuilt.failure_message() == step.failure_message()
    assert rebuilt.succeeded is False
