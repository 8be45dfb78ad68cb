"""Hooks for AWS Batch and CloudWatch Logs, built on the Amazon provider's ``AwsBaseHook``.

Connections, credentials, regions and endpoint URLs (including the local endpoint) all come from
the Airflow connection, exactly as for the Amazon provider's own hooks.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

#: Throttling and 5xx answers are retried by botocore's standard mode: exponential backoff with
#: full jitter, bounded by the attempt count. A ``botocore_config`` given by the user wins.
DEFAULT_RETRIES: dict[str, Any] = {"retries": {"mode": "standard", "max_attempts": 8}}


#: Log reads retry less: a log outage must not hold up the next poll of the job for a minute,
#: and a page not read now is read next round.
LOG_READ_ATTEMPTS = 3

#: Error codes AWS gives a call that may well succeed when tried again later.
_TRANSIENT_CODES = frozenset(
    {"TooManyRequestsException", "ThrottlingException", "Throttling", "RequestLimitExceeded"}
)


def client_settings(
    aws_conn_id: str | None,
    region_name: str | None,
    verify: bool | str | None,
    botocore_config: dict[str, Any] | None,
    max_attempts: int | None = None,
) -> dict[str, Any]:
    """Return the keyword arguments every hook of this package is built with.

    :param max_attempts: attempts per call under botocore's standard retry mode, when the
        user's ``botocore_config`` says nothing of retries.
    """
    retries = (
        {"retries": {"mode": "standard", "max_attempts": max_attempts}} if max_attempts else {}
    )
    config = {**DEFAULT_RETRIES, **retries, **(botocore_config or {})}
    return {
        "aws_conn_id": aws_conn_id,
        "region_name": region_name,
        "verify": verify,
        "config": Config(**config),
    }


class SidecarBatchHook(AwsBaseHook):
    """Call AWS Batch for the operator: job definitions, jobs, and their descriptions.

    Takes the same arguments as :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "batch"
        super().__init__(*args, **kwargs)

    def describe_active_job_definitions(self, name: str) -> list[dict[str, Any]]:
        """Return every ACTIVE revision of the job definition called ``name``."""
        paginator = self.conn.get_paginator("describe_job_definitions")
        revisions: list[dict[str, Any]] = []
        for page in paginator.paginate(jobDefinitionName=name, status="ACTIVE"):
            revisions.extend(page["jobDefinitions"])
        return revisions

    def register_job_definition(self, request: dict[str, Any]) -> str:
        """Register a revision and return its ARN."""
        return self.conn.register_job_definition(**request)["jobDefinitionArn"]

    def deregister_job_definition(self, arn: str) -> None:
        """Deregister one revision; ensure does this only to a duplicate it has just made."""
        self.conn.deregister_job_definition(jobDefinition=arn)

    def submit_job(self, request: dict[str, Any]) -> dict[str, Any]:
        """Submit a job; return Batch's answer (``jobId``, ``jobName``, ``jobArn``)."""
        return self.conn.submit_job(**request)

    def list_job_ids(self, job_queue: str, job_name: str) -> list[str]:
        """Return the ids of the jobs called ``job_name`` in ``job_queue``, in any state."""
        paginator = self.conn.get_paginator("list_jobs")
        pages = paginator.paginate(
            jobQueue=job_queue, filters=[{"name": "JOB_NAME", "values": [job_name]}]
        )
        return [job["jobId"] for page in pages for job in page["jobSummaryList"]]

    def describe_jobs(self, job_ids: list[str]) -> list[dict[str, Any]]:
        """Describe jobs, 100 ids per call as Batch allows."""
        jobs: list[dict[str, Any]] = []
        for start in range(0, len(job_ids), 100):
            jobs.extend(self.conn.describe_jobs(jobs=job_ids[start : start + 100])["jobs"])
        return jobs

    def terminate_job(self, job_id: str, reason: str) -> None:
        """Terminate a job in any state; Batch records ``reason`` as its status reason."""
        self.conn.terminate_job(jobId=job_id, reason=reason)


class SidecarLogsHook(AwsBaseHook):
    """Read CloudWatch Logs for the trigger and the synchronous wait.

    Takes the same arguments as :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "logs"
        super().__init__(*args, **kwargs)


def is_transient(error: Exception) -> bool:
    """Whether a failed call is worth trying again at the next poll: throttling, 5xx, network."""
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.response.get("Error", {}).get("Code") in _TRANSIENT_CODES or status >= 500
    return isinstance(error, BotoCoreError)
