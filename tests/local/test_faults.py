"""Fault injection in the local endpoint, through boto3 as the operator meets it."""

from __future__ import annotations

import json
import textwrap
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import create_parser
from botocore.retries.standard import (
    RetryContext,
    ThrottledRetryableChecker,
    TransientRetryableChecker,
)
from botocore.session import get_session

from airflow_sidecar_batch.local.faults import (
    Faults,
    InjectedError,
    InvalidFaultsError,
    error_answer,
)
from airflow_sidecar_batch.local.sandbox import NetworkSandbox
from tests.support import start_endpoint, stop_endpoint

# Prints "line 1" to "line $LINES", puts the object $PUT_KEY without retrying when given, then
# exits with $CODE.
TALKER = textwrap.dedent(
    """
    import os, sys
    for n in range(1, int(os.environ.get("LINES", "2")) + 1):
        print("line", n, flush=True)
    if os.environ.get("PUT_KEY"):
        import boto3
        from botocore.config import Config
        from botocore.exceptions import ClientError
        s3 = boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 1}))
        try:
            s3.put_object(Bucket="sidecar-exports", Key=os.environ["PUT_KEY"], Body=b"x")
            print("put: ok", flush=True)
        except ClientError as error:
            print("put:", error.response["Error"]["Code"], flush=True)
    sys.exit(int(os.environ.get("CODE", "0")))
    """
)

# With this seed, a rule of fraction 0.5 fires on the 2nd and 7th of its first 9 draws: six calls
# take two retries, each after at most 1 s of standard-mode backoff.
SEED = 17

# Given with --fault-file: in force from the start, and put back after every test.
FROM_FILE = {
    "seed": None,
    "faults": [
        {"kind": "exit_code", "container": "app", "exit_code": 3, "job_name_prefix": "exit-"}
    ],
}


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    (folder / "talker.py").write_text(TALKER)
    images = {"talker": {"entrypoint": ["{python}", "{here}/talker.py"], "command": []}}
    (folder / "images.yaml").write_text(json.dumps({"images": images}))
    (folder / "faults.json").write_text(json.dumps(FROM_FILE))
    running = start_endpoint(
        folder / "endpoint.log",
        "--images",
        str(folder / "images.yaml"),
        "--fault-file",
        str(folder / "faults.json"),
    )
    yield running
    stop_endpoint(running)


@pytest.fixture(autouse=True)
def _file_faults_after_each_test(request):
    yield
    if "local" in request.fixturenames:
        _faults(request.getfixturevalue("local"), "PUT", FROM_FILE)


@pytest.fixture(scope="module")
def definition(local):
    batch = local.client("batch")
    app = {
        "name": "app",
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/talker:1",
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-stream-prefix": "f"}},
    }
    answer = batch.register_job_definition(
        jobDefinitionName="faults",
        type="container",
        platformCapabilities=["FARGATE"],
        ecsProperties={
            "taskProperties": [
                {"executionRoleArn": "arn:aws:iam::123456789012:role/x", "containers": [app]}
            ]
        },
    )
    return answer["jobDefinitionArn"]


def _faults(local, method, document=None):
    data = json.dumps(document).encode() if document is not None else None
    request = urllib.request.Request(f"{local.url}/_local/faults", data=data, method=method)
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.load(answer)


def _client(local, service, attempts):
    return boto3.client(
        service,
        endpoint_url=local.url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"mode": "standard", "max_attempts": attempts}),
    )


def _submit(local, definition, name, **environment):
    override = [{"name": key, "value": value} for key, value in environment.items()]
    return local.client("batch").submit_job(
        jobName=name,
        jobQueue="sidecar-local",
        jobDefinition=definition,
        ecsPropertiesOverride={
            "taskProperties": [{"containers": [{"name": "app", "environment": override}]}]
        },
    )["jobId"]


def _until(condition, timeout=20.0, every=0.05):
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        time.sleep(every)


def _run(local, definition, name, **environment):
    job_id = _submit(local, definition, name, **environment)
    return _until(lambda: _ended(local, job_id))


def _describe(local, job_id):
    return local.client("batch").describe_jobs(jobs=[job_id])["jobs"][0]


def _ended(local, job_id):
    job = _describe(local, job_id)
    return job if job["status"] in ("SUCCEEDED", "FAILED") else None


def _stream(job):
    return job["ecsProperties"]["taskProperties"][0]["containers"][0]["logStreamName"]


def _messages(logs, job):
    events = logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=_stream(job), startFromHead=True
    )["events"]
    return [event["message"] for event in events]


def _injected(local, key):
    return local.stats()["faults"].get(key, 0)


# The fault document


def test_the_routes_give_replace_and_clear_the_document(local):
    document = {"seed": 4, "faults": [{"kind": "error", "api": "s3.GET", "fraction": 0.25}]}

    at_start = _faults(local, "GET")
    replaced = _faults(local, "PUT", document)
    current = _faults(local, "GET")
    cleared = _faults(local, "DELETE")

    assert at_start == FROM_FILE
    assert replaced == current
    assert current["faults"] == [
        {"kind": "error", "api": "s3.GET", "fraction": 0.25, "status": 500}
    ]
    assert cleared == {"seed": None, "faults": []}


def test_a_malformed_document_is_refused_and_the_rules_stay(local):
    bad = {"faults": [{"kind": "throttle", "api": "logs.GetLogEvent", "fraction": 0.5}]}

    with pytest.raises(urllib.error.HTTPError) as caught:
        _faults(local, "PUT", bad)

    assert caught.value.code == 400
    assert "did you mean logs.GetLogEvents" in json.load(caught.value)["message"]
    assert _faults(local, "GET") == FROM_FILE


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"kind": "slow"}, r"faults\[0\]\.kind is 'slow'; expected one of"),
        ({"kind": "throttle", "api": "batch.DescribeJobs"}, r"lacks \['fraction'\]"),
        ({"kind": "throttle", "api": "s3.PUT", "fraction": 1.5}, "expected a number from 0 to 1"),
        ({"kind": "throttle", "api": "sqs.Send", "fraction": 1}, "service one of"),
        ({"kind": "throttle", "api": "s3.PATCH", "fraction": 1}, "'PATCH' is not one of"),
        ({"kind": "error", "api": "s3.PUT", "fraction": 1, "status": 502}, r"\[500, 503\]"),
        ({"kind": "delay_logs", "seconds": 0}, "expected a number above 0"),
        ({"kind": "delay_logs", "seconds": None}, "seconds is null"),
        ({"kind": "exit_code", "container": "app", "exit_code": 300}, "expected 0 to 255"),
        ({"kind": "hold_runnable", "for": 3}, r"unknown field\(s\) \['for'\]"),
    ],
    ids=[
        "kind",
        "missing",
        "fraction",
        "service",
        "method",
        "status",
        "seconds",
        "no-delay",
        "code",
        "field",
    ],
)
def test_malformed_rules_are_named_with_what_is_accepted(rule, message):
    with pytest.raises(InvalidFaultsError, match=message):
        Faults({"faults": [rule]})


def test_a_seed_makes_the_draws_repeat_per_rule():
    document = {
        "seed": 11,
        "faults": [
            {"kind": "throttle", "api": "logs.GetLogEvents", "fraction": 0.5},
            {"kind": "error", "api": "batch.DescribeJobs", "fraction": 0.5},
        ],
    }
    first, second = Faults(document), Faults(document)

    # The second one also sees calls to another API in between: they draw from another rule.
    draws = [first.for_call("logs.GetLogEvents", list) for _ in range(20)]
    for _ in range(20):
        second.for_call("batch.DescribeJobs", list)
    again = [second.for_call("logs.GetLogEvents", list) for _ in range(20)]

    assert draws == again
    assert 0 < draws.count(InjectedError("throttle", 400)) < 20


@pytest.mark.parametrize(
    ("service", "operation", "kind", "status", "checker"),
    [
        ("batch", "DescribeJobs", "throttle", 429, ThrottledRetryableChecker),
        ("logs", "GetLogEvents", "throttle", 400, ThrottledRetryableChecker),
        ("s3", "PutObject", "throttle", 503, ThrottledRetryableChecker),
        ("batch", "DescribeJobs", "error", 500, TransientRetryableChecker),
        ("logs", "GetLogEvents", "error", 503, TransientRetryableChecker),
        ("s3", "PutObject", "error", 500, TransientRetryableChecker),
    ],
    ids=["batch-429", "logs-throttling", "s3-slowdown", "batch-500", "logs-503", "s3-500"],
)
def test_botocores_standard_retries_classify_each_answer(service, operation, kind, status, checker):
    model = get_session().get_service_model(service)
    status_line, headers, body = error_answer(service, InjectedError(kind, status))
    headers = HeadersDict(headers)
    response = {"status_code": status, "headers": headers, "body": body}
    parsed = create_parser(model.metadata["protocol"]).parse(
        response, model.operation_model(operation).output_shape
    )
    context = RetryContext(
        attempt_number=1,
        operation_model=model.operation_model(operation),
        parsed_response=parsed,
        http_response=AWSResponse("http://local", status, headers, None),
    )

    assert status_line.startswith(str(status))
    assert checker().is_retryable(context)


# Throttling and 5xx through boto3


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("throttle", None, "TooManyRequestsException"), ("error", 503, "ServiceUnavailable")],
    ids=["throttle", "5xx"],
)
def test_faulted_describe_jobs_are_retried_until_they_succeed(
    local, definition, kind, status, code
):
    job_id = _submit(local, definition, f"retried-{kind}-1")
    rule = {"kind": kind, "api": "batch.DescribeJobs", "fraction": 0.5}
    rule |= {"job_name_prefix": "retried-"} | ({"status": status} if status else {})
    _faults(local, "PUT", {"seed": SEED, "faults": [rule]})
    before = _injected(local, f"{kind}.batch.DescribeJobs")

    batch = _client(local, "batch", attempts=10)
    answers = [batch.describe_jobs(jobs=[job_id]) for _ in range(6)]

    assert all(a["jobs"][0]["jobId"] == job_id for a in answers)
    assert [a["ResponseMetadata"]["RetryAttempts"] for a in answers] == [0, 1, 0, 0, 0, 1]
    assert _injected(local, f"{kind}.batch.DescribeJobs") == before + 2


def test_throttled_log_reads_are_retried_until_they_succeed(local, definition):
    job = _run(local, definition, "retried-logs-1", LINES="3")
    _faults(
        local,
        "PUT",
        {
            "seed": SEED,
            "faults": [
                {
                    "kind": "throttle",
                    "api": "logs.GetLogEvents",
                    "fraction": 0.5,
                    "job_name_prefix": "retried-logs-",
                }
            ],
        },
    )
    before = _injected(local, "throttle.logs.GetLogEvents")

    logs = _client(local, "logs", attempts=10)
    reads = [
        logs.get_log_events(
            logGroupName="/aws/batch/job", logStreamName=_stream(job), startFromHead=True
        )
        for _ in range(6)
    ]

    assert [[e["message"] for e in read["events"]] for read in reads] == [
        ["line 1", "line 2", "line 3"]
    ] * 6
    assert [read["ResponseMetadata"]["RetryAttempts"] for read in reads] == [0, 1, 0, 0, 0, 1]
    assert _injected(local, "throttle.logs.GetLogEvents") == before + 2


@pytest.mark.parametrize(
    ("service", "rule", "code", "http_status"),
    [
        ("batch", {"kind": "throttle"}, "TooManyRequestsException", 429),
        ("logs", {"kind": "throttle"}, "ThrottlingException", 400),
        ("s3", {"kind": "throttle"}, "SlowDown", 503),
        ("batch", {"kind": "error", "status": 500}, "InternalFailure", 500),
        ("logs", {"kind": "error", "status": 503}, "ServiceUnavailable", 503),
        ("s3", {"kind": "error", "status": 500}, "InternalError", 500),
    ],
    ids=["batch-throttle", "logs-throttle", "s3-throttle", "batch-500", "logs-503", "s3-500"],
)
def test_without_retries_the_fault_surfaces_with_aws_code(local, service, rule, code, http_status):
    api, call = {
        "batch": ("batch.DescribeJobQueues", lambda client: client.describe_job_queues()),
        "logs": ("logs.DescribeLogGroups", lambda client: client.describe_log_groups()),
        "s3": ("s3.PUT", lambda client: client.put_object(Bucket="sidecar-exports", Key="k")),
    }[service]
    _faults(local, "PUT", {"faults": [{**rule, "api": api, "fraction": 1}]})

    with pytest.raises(ClientError) as caught:
        call(_client(local, service, attempts=1))

    error = caught.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
        code,
        http_status,
    )
    assert "fault injected" in error["Error"]["Message"]


def test_a_fault_scoped_to_a_prefix_leaves_other_jobs_alone(local, definition):
    mine, other = (_submit(local, definition, name) for name in ("scoped-1", "unscoped-1"))
    _faults(
        local,
        "PUT",
        {
            "faults": [
                {
                    "kind": "throttle",
                    "api": "batch.DescribeJobs",
                    "fraction": 1,
                    "job_name_prefix": "scoped-",
                }
            ]
        },
    )
    batch = _client(local, "batch", attempts=1)

    assert batch.describe_jobs(jobs=[other])["jobs"][0]["jobId"] == other
    with pytest.raises(ClientError, match="TooManyRequestsException"):
        batch.describe_jobs(jobs=[mine])


@pytest.mark.skipif(
    not NetworkSandbox.available(),
    reason="a container's calls are told apart by its job's network namespace, not made here",
)
def test_a_containers_s3_calls_are_scoped_to_its_job(local, definition):
    rule = {"kind": "throttle", "api": "s3.PUT", "fraction": 1, "job_name_prefix": "s3-scoped-"}
    _faults(local, "PUT", {"faults": [rule]})

    scoped = _run(local, definition, "s3-scoped-1", LINES="0", PUT_KEY="scoped")
    free = _run(local, definition, "s3-free-1", LINES="0", PUT_KEY="free")
    host = _client(local, "s3", attempts=1)
    host.put_object(Bucket="sidecar-exports", Key="from-the-host", Body=b"x")

    assert _messages(local.client("logs"), scoped) == ["put: SlowDown"]
    assert _messages(local.client("logs"), free) == ["put: ok"]


# Late logs, held jobs, exit codes


def test_delayed_lines_become_readable_only_after_the_delay(local, definition):
    # Long enough that the job, which prints at once, ends well before its lines show.
    delay = 3.0
    rule = {"kind": "delay_logs", "seconds": delay, "job_name_prefix": "late-"}
    _faults(local, "PUT", {"faults": [rule]})
    logs = local.client("logs")

    submitted = time.monotonic()
    job = _run(local, definition, "late-1", LINES="3")
    unread_at_end = _messages(logs, job)
    _until(lambda: _messages(logs, job), timeout=delay + 10)
    visible = time.monotonic()

    # The lines are released one by one, in the order printed; wait for the last.
    def all_three():
        found = _messages(logs, job)
        return found if len(found) == 3 else None

    lines = _until(all_three, timeout=5)

    assert job["status"] == "SUCCEEDED"
    assert unread_at_end == []
    assert lines == ["line 1", "line 2", "line 3"]
    assert visible - submitted >= delay
    stamps = logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=_stream(job), startFromHead=True
    )["events"]
    # Each line keeps the time it was printed, before the job ended, as CloudWatch Logs keeps it.
    assert all(event["timestamp"] <= job["stoppedAt"] for event in stamps)


def test_a_held_job_stays_runnable_while_others_run_and_terminates_failed(local, definition):
    _faults(local, "PUT", {"faults": [{"kind": "hold_runnable", "job_name_prefix": "held-"}]})
    before = _injected(local, "hold_runnable")
    held = _submit(local, definition, "held-1")
    _until(lambda: _injected(local, "hold_runnable") > before)

    other = _run(local, definition, "free-1")
    status_after_other = _describe(local, held)["status"]
    local.client("batch").terminate_job(jobId=held, reason="rehearsal: queue stuck")
    ended = _until(lambda: _ended(local, held))

    assert other["status"] == "SUCCEEDED"
    assert status_after_other == "RUNNABLE"
    assert (ended["status"], ended["statusReason"]) == ("FAILED", "rehearsal: queue stuck")
    assert "startedAt" not in ended


def test_a_hold_with_seconds_ends_by_itself(local, definition):
    rule = {"kind": "hold_runnable", "seconds": 1.5, "job_name_prefix": "held-for-"}
    _faults(local, "PUT", {"faults": [rule]})

    job = _run(local, definition, "held-for-1")

    assert job["status"] == "SUCCEEDED"
    assert job["startedAt"] - job["createdAt"] >= 1500


def test_clearing_the_faults_releases_a_held_job(local, definition):
    _faults(local, "PUT", {"faults": [{"kind": "hold_runnable", "job_name_prefix": "held-"}]})
    before = _injected(local, "hold_runnable")
    held = _submit(local, definition, "held-2")
    _until(lambda: _injected(local, "hold_runnable") > before)

    _faults(local, "DELETE")
    job = _until(lambda: _ended(local, held))

    assert job["status"] == "SUCCEEDED"


def test_an_exit_code_fault_from_the_file_fails_the_job_with_that_code(local, definition):
    before = _injected(local, "exit_code")

    job = _run(local, definition, "exit-1", LINES="2")

    container = job["ecsProperties"]["taskProperties"][0]["containers"][0]
    assert (job["status"], container["exitCode"]) == ("FAILED", 3)
    assert job["attempts"][0]["taskProperties"][0]["containers"][0]["exitCode"] == 3
    assert _messages(local.client("logs"), job) == [
        "line 1",
        "line 2",
        "local endpoint: fault injected: exit code 3 instead of 0",
    ]
    assert _injected(local, "exit_code") == before + 1
