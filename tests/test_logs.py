from __future__ import annotations

import asyncio

import boto3
from botocore.stub import Stubber

from airflow_sidecar_batch.job_status import LogStream
from airflow_sidecar_batch.logs import LogTail, adrain, drain

STREAM = LogStream("data-pipeline", "/aws/batch/job", "flights/data-pipeline/t1")


def _request(token=None):
    request = {
        "logGroupName": STREAM.group,
        "logStreamName": STREAM.name,
        "startFromHead": True,
    }
    if token:
        request["nextToken"] = token
    return request


def _page(messages, token):
    events = [{"timestamp": 1, "message": m, "ingestionTime": 1} for m in messages]
    return {"events": events, "nextForwardToken": token, "nextBackwardToken": "b"}


def test_reads_past_empty_pages_until_the_token_repeats():
    client = boto3.client("logs", region_name="us-east-1")
    lines = []
    tail = LogTail()
    tail.track([STREAM])
    with Stubber(client) as stub:
        stub.add_response("get_log_events", _page(["one", "two"], "f1"), _request())
        stub.add_response("get_log_events", _page([], "f2"), _request("f1"))
        stub.add_response("get_log_events", _page(["three\n"], "f3"), _request("f2"))
        stub.add_response("get_log_events", _page([], "f3"), _request("f3"))

        drain(tail, client, lambda stream, message: lines.append((stream.container, message)))

        stub.assert_no_pending_responses()
    assert lines == [("data-pipeline", "one"), ("data-pipeline", "two"), ("data-pipeline", "three")]


def test_next_round_starts_where_the_last_stopped():
    client = boto3.client("logs", region_name="us-east-1")
    lines = []
    tail = LogTail()
    tail.track([STREAM])
    with Stubber(client) as stub:
        stub.add_response("get_log_events", _page(["one"], "f1"), _request())
        stub.add_response("get_log_events", _page([], "f1"), _request("f1"))
        stub.add_response("get_log_events", _page(["two"], "f2"), _request("f1"))
        stub.add_response("get_log_events", _page([], "f2"), _request("f2"))

        drain(tail, client, lambda stream, message: lines.append(message))
        drain(tail, client, lambda stream, message: lines.append(message))

    assert lines == ["one", "two"]
    assert LogTail(tail.tokens()).tokens() == {}  # nothing tracked yet, saved tokens wait
    rebuilt = LogTail(tail.tokens())
    rebuilt.track([STREAM])
    assert rebuilt.tokens() == {"/aws/batch/job:flights/data-pipeline/t1": "f2"}


def test_a_missing_stream_is_skipped_until_it_exists():
    client = boto3.client("logs", region_name="us-east-1")
    tail = LogTail()
    tail.track([STREAM])
    with Stubber(client) as stub:
        stub.add_client_error("get_log_events", "ResourceNotFoundException", "no stream")
        drain(tail, client, lambda stream, message: None)
        stub.assert_no_pending_responses()
    assert tail.tokens() == {}


class _AsyncClient:
    """Carries the sync stubbed client's answers to the async drain."""

    def __init__(self, client):
        self.client = client

    async def get_log_events(self, **request):
        return self.client.get_log_events(**request)


def test_async_drain_reads_the_same_lines():
    client = boto3.client("logs", region_name="us-east-1")
    lines = []
    tail = LogTail()
    tail.track([STREAM])
    with Stubber(client) as stub:
        stub.add_response("get_log_events", _page(["one"], "f1"), _request())
        stub.add_client_error("get_log_events", "ThrottlingException", "slow down")
        asyncio.run(adrain(tail, _AsyncClient(client), lambda s, m: lines.append(m)))
        stub.assert_no_pending_responses()

    # The throttled page is read again next round, from the last good token.
    assert lines == ["one"]
    assert tail.tokens() == {"/aws/batch/job:flights/data-pipeline/t1": "f1"}


def test_a_round_interleaves_streams_by_timestamp_keeping_each_streams_order():
    client = boto3.client("logs", region_name="us-east-1")
    app = LogStream("main-app", "/aws/batch/job", "flights/main-app/t1")
    lines = []
    tail = LogTail()
    tail.track([app, STREAM])

    def page(events, token):
        return {
            "events": [{"timestamp": t, "message": m, "ingestionTime": t} for t, m in events],
            "nextForwardToken": token,
            "nextBackwardToken": "b",
        }

    app_request = {"logGroupName": app.group, "logStreamName": app.name, "startFromHead": True}
    with Stubber(client) as stub:
        stub.add_response("get_log_events", page([(1, "a1"), (5, "a2")], "fa"), app_request)
        stub.add_response("get_log_events", page([], "fa"), {**app_request, "nextToken": "fa"})
        stub.add_response(
            "get_log_events", page([(3, "p1"), (5, "p2"), (5, "p3")], "fp"), _request()
        )
        stub.add_response("get_log_events", page([], "fp"), _request("fp"))

        drain(tail, client, lambda stream, message: lines.append(message))

    assert lines == ["a1", "p1", "a2", "p2", "p3"]
