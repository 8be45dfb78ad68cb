"""The local endpoint through boto3, as users and the operator reach it."""

from __future__ import annotations

import json
import textwrap
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support import start_endpoint, stop_endpoint

PROGRAMS = {
    # Prints its arguments and a line from the environment's override, then exits with $CODE.
    "echo-exit": textwrap.dedent(
        """
        import os, sys
        print("args:", " ".join(sys.argv[1:]), flush=True)
        print("greeting:", os.environ.get("GREETING", "none"), flush=True)
        sys.exit(int(os.environ.get("CODE", "0")))
        """
    ),
    # Serves on 127.0.0.1:8080 until stopped: two jobs at once must not collide.
    "server": textwrap.dedent(
        """
        import http.server
        server = http.server.HTTPServer(("127.0.0.1", 8080), http.server.BaseHTTPRequestHandler)
        print("listening", flush=True)
        server.serve_forever()
        """
    ),
    "sleeper": "import time\nprint('sleeping', flush=True)\ntime.sleep(120)\n",
}


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    folder = tmp_path_factory.mktemp("programs")
    images = {}
    for name, source in PROGRAMS.items():
        (folder / f"{name}.py").write_text(source)
        images[name] = {"entrypoint": ["{python}", f"{{here}}/{name}.py"], "command": []}
    (folder / "images.yaml").write_text(json.dumps({"images": images}))
    running = start_endpoint(folder / "endpoint.log", "--images", str(folder / "images.yaml"))
    yield running
    stop_endpoint(running)


def _definition(name, *containers):
    return {
        "jobDefinitionName": name,
        "type": "container",
        "platformCapabilities": ["FARGATE"],
        "ecsProperties": {
            "taskProperties": [
                {
                    "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
                    "containers": list(containers),
                }
            ]
        },
    }


def _container(name, image, **extra):
    return {
        "name": name,
        "image": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{image}:1",
    } | extra


def _wait(batch, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        job = batch.describe_jobs(jobs=[job_id])["jobs"][0]
        if job["status"] in ("SUCCEEDED", "FAILED") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def _lines(local, job, container):
    (found,) = [
        c for c in job["ecsProperties"]["taskProperties"][0]["containers"] if c["name"] == container
    ]
    events = local.client("logs").get_log_events(
        logGroupName="/aws/batch/job", logStreamName=found["logStreamName"], startFromHead=True
    )["events"]
    return [e["message"] for e in events]


def test_register_adds_revisions_and_describe_filters_active(local):
    batch = local.client("batch")
    definition = _definition("revisions", _container("only", "echo-exit"))

    first = batch.register_job_definition(**definition)
    second = batch.register_job_definition(**definition)
    batch.deregister_job_definition(jobDefinition=first["jobDefinitionArn"])
    active = batch.describe_job_definitions(jobDefinitionName="revisions", status="ACTIVE")

    assert (first["revision"], second["revision"]) == (1, 2)
    assert [d["revision"] for d in active["jobDefinitions"]] == [2]


def test_requests_are_checked_against_botocores_model(local):
    client = boto3.client(
        "batch",
        endpoint_url=local.url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(parameter_validation=False),
    )

    with pytest.raises(ClientError, match="jobDefinitionName") as caught:
        client.register_job_definition(type="container", ecsProperties={"taskProperties": []})

    assert caught.value.response["Error"]["Code"] == "ClientException"


def test_a_job_runs_its_command_with_parameters_and_overrides(local):
    batch = local.client("batch")
    definition = _definition(
        "echo",
        _container(
            "app",
            "echo-exit",
            command=["first", "Ref::WORD"],
            logConfiguration={"logDriver": "awslogs", "options": {"awslogs-stream-prefix": "p"}},
        ),
    )
    definition["parameters"] = {"WORD": "default"}
    arn = batch.register_job_definition(**definition)["jobDefinitionArn"]

    submitted = batch.submit_job(
        jobName="echo-1",
        jobQueue="sidecar-local",
        jobDefinition=arn,
        parameters={"WORD": "given"},
        ecsPropertiesOverride={
            "taskProperties": [
                {
                    "containers": [
                        {"name": "app", "environment": [{"name": "GREETING", "value": "hi"}]}
                    ]
                }
            ]
        },
    )
    job = _wait(batch, submitted["jobId"])

    assert job["status"] == "SUCCEEDED"
    (container,) = job["ecsProperties"]["taskProperties"][0]["containers"]
    assert container["exitCode"] == 0
    assert container["logStreamName"].startswith("p/app/")
    assert _lines(local, job, "app") == ["args: first given", "greeting: hi"]
    assert job["attempts"][0]["taskProperties"][0]["containers"][0]["exitCode"] == 0


def test_the_essential_containers_exit_code_decides_and_stops_the_others(local):
    batch = local.client("batch")
    definition = _definition(
        "failing",
        _container("server", "server", essential=False),
        _container(
            "pipeline",
            "echo-exit",
            environment=[{"name": "CODE", "value": "3"}],
            dependsOn=[{"containerName": "server", "condition": "START"}],
        ),
    )
    arn = batch.register_job_definition(**definition)["jobDefinitionArn"]

    job = _wait(
        batch, batch.submit_job(jobName="f", jobQueue="sidecar-local", jobDefinition=arn)["jobId"]
    )

    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Essential container in task exited"
    containers = {c["name"]: c for c in job["ecsProperties"]["taskProperties"][0]["containers"]}
    assert containers["pipeline"]["exitCode"] == 3
    assert "essential container pipeline exited" in containers["server"]["reason"]


def test_two_jobs_at_once_each_have_their_own_localhost(local):
    batch = local.client("batch")
    definition = _definition(
        "ports",
        _container("server", "server", essential=False),
        _container(
            "probe",
            "sleeper",
            dependsOn=[{"containerName": "server", "condition": "START"}],
        ),
    )
    arn = batch.register_job_definition(**definition)["jobDefinitionArn"]
    ids = [
        batch.submit_job(jobName=f"ports-{n}", jobQueue="sidecar-local", jobDefinition=arn)["jobId"]
        for n in range(2)
    ]
    deadline = time.monotonic() + 30
    while True:
        jobs = batch.describe_jobs(jobs=ids)["jobs"]
        if all(j["status"] == "RUNNING" for j in jobs) and all(
            "listening" in _lines(local, j, "server") for j in jobs
        ):
            break
        assert time.monotonic() < deadline, [j["status"] for j in jobs]
        time.sleep(0.2)

    for job_id in ids:
        batch.terminate_job(jobId=job_id, reason="test is done")
    ended = [_wait(batch, job_id) for job_id in ids]

    assert [j["status"] for j in ended] == ["FAILED", "FAILED"]
    assert {j["statusReason"] for j in ended} == {"test is done"}
    assert local.stats()["peak_jobs"] >= 2


def test_list_jobs_by_name_prefix(local):
    batch = local.client("batch")
    arn = batch.register_job_definition(**_definition("listed", _container("a", "echo-exit")))[
        "jobDefinitionArn"
    ]
    for name in ("listed-a", "listed-b", "other"):
        _wait(
            batch,
            batch.submit_job(jobName=name, jobQueue="sidecar-local", jobDefinition=arn)["jobId"],
        )

    found = batch.list_jobs(
        jobQueue="sidecar-local", filters=[{"name": "JOB_NAME", "values": ["listed-*"]}]
    )["jobSummaryList"]

    assert sorted(j["jobName"] for j in found) == ["listed-a", "listed-b"]


def test_unknown_queue_names_the_known_ones(local):
    batch = local.client("batch")
    arn = batch.register_job_definition(**_definition("q", _container("a", "echo-exit")))[
        "jobDefinitionArn"
    ]

    with pytest.raises(ClientError, match="known queues: sidecar-local"):
        batch.submit_job(jobName="q", jobQueue="nope", jobDefinition=arn)


def test_call_counts_are_kept_per_api(local):
    local.client("batch").describe_job_queues()

    calls = local.stats()["calls"]

    assert calls["batch.DescribeJobQueues"] >= 1


def test_an_image_with_no_local_program_fails_the_job_naming_the_container(local):
    batch = local.client("batch")
    definition = _definition("unmapped", _container("pipeline", "no-such-program"))
    arn = batch.register_job_definition(**definition)["jobDefinitionArn"]

    job = _wait(
        batch, batch.submit_job(jobName="u", jobQueue="sidecar-local", jobDefinition=arn)["jobId"]
    )

    (container,) = job["ecsProperties"]["taskProperties"][0]["containers"]
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Task failed to start: container pipeline has no local program"
    assert container["reason"].startswith("CannotPullContainerError: ")
    assert "no-such-program" in container["reason"]


def test_repeated_container_names_are_refused(local):
    definition = _definition("twins", _container("a", "echo-exit"), _container("a", "echo-exit"))

    with pytest.raises(ClientError, match="container names must be unique; repeated: a"):
        local.client("batch").register_job_definition(**definition)


def test_cancel_leaves_a_running_job_running_as_aws_does(local):
    batch = local.client("batch")
    arn = batch.register_job_definition(**_definition("cancel", _container("s", "sleeper")))[
        "jobDefinitionArn"
    ]
    job_id = batch.submit_job(jobName="cancel", jobQueue="sidecar-local", jobDefinition=arn)[
        "jobId"
    ]
    deadline = time.monotonic() + 30
    while batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)

    batch.cancel_job(jobId=job_id, reason="too late to cancel")
    time.sleep(1)  # give a wrongful stop the time to show
    still = batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"]
    batch.terminate_job(jobId=job_id, reason="test is done")

    assert still == "RUNNING"
    assert _wait(batch, job_id)["statusReason"] == "test is done"
