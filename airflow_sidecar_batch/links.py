"""Console links on the task: the Batch job page and each container's log stream.

The Amazon provider's link classes build the URLs; this module only says what to store. Links'
names are fixed per class, so containers are linked by position in the job definition.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.links.batch import BatchJobDetailsLink
from airflow.providers.amazon.aws.links.logs import CloudWatchEventsLink

from airflow_sidecar_batch.job_status import LogStream

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context


class FirstContainerLogsLink(CloudWatchEventsLink):
    """The log stream of the job definition's first container."""

    name = "Logs: first container"
    key = "sidecar_batch_logs_first"


class SecondContainerLogsLink(CloudWatchEventsLink):
    """The log stream of the job definition's second container."""

    name = "Logs: second container"
    key = "sidecar_batch_logs_second"


EXTRA_LINKS = (BatchJobDetailsLink(), FirstContainerLogsLink(), SecondContainerLogsLink())
_BY_POSITION = (FirstContainerLogsLink, SecondContainerLogsLink)


def persist_job_link(
    context: Context, operator: BaseOperator, job_id: str, region: str, partition: str
) -> None:
    """Store what the job page's link needs."""
    BatchJobDetailsLink.persist(
        context=context,
        operator=operator,
        region_name=region,
        aws_partition=partition,
        job_id=job_id,
    )


def persist_log_links(
    context: Context,
    operator: BaseOperator,
    streams: Iterable[dict[str, Any]],
    region: str,
    partition: str,
) -> None:
    """Store what each container's log link needs; the latest attempt's stream wins."""
    latest: dict[str, LogStream] = {}
    for stream in (LogStream(**s) for s in streams):
        latest[stream.container] = stream
    # A third container and beyond get no link: link classes are fixed, two of them.
    for link, stream in zip(_BY_POSITION, latest.values(), strict=False):
        link.persist(
            context=context,
            operator=operator,
            region_name=region,
            aws_partition=partition,
            awslogs_region=stream.region or region,
            awslogs_group=stream.group,
            awslogs_stream_name=stream.name,
        )


def reserve_log_links(context: Context) -> None:
    """Store empty log links until the streams exist.

    Airflow reads every link when the task defers; a missing key would be logged as an error.
    """
    for link in _BY_POSITION:
        context["ti"].xcom_push(key=link.key, value={})
