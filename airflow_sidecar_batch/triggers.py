"""The deferrable trigger: wait for a Batch job while streaming both containers' logs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_sidecar_batch.hooks import SidecarBatchHook, SidecarLogsHook, client_settings
from airflow_sidecar_batch.job_status import JobStatus, JobStep, LogStream, job_step
from airflow_sidecar_batch.logs import LogTail, adrain


class SidecarBatchJobTrigger(BaseTrigger):
    """Poll a Batch job until it finishes, forwarding new lines of every container as they come.

    Each forwarded line is prefixed with its container's name. Once the job has finished, the
    streams are read once more until they have been quiet for ``final_log_wait`` seconds after
    the job stopped, so the last lines are not lost to CloudWatch's ingestion delay.

    :param job_id: the Batch job to follow.
    :param job_name: the job's name, for messages.
    :param aws_conn_id: the Airflow connection to AWS (or the local endpoint).
    :param region_name: AWS Region; the connection's when None.
    :param verify: whether and how to verify TLS certificates.
    :param botocore_config: botocore ``Config`` settings, as a dict.
    :param waiter_delay: seconds between polls of the job.
    :param final_log_wait: seconds after the job stopped during which late lines are awaited.
    """

    def __init__(
        self,
        job_id: str,
        job_name: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        waiter_delay: float = 10.0,
        final_log_wait: float = 5.0,
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.job_name = job_name
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.waiter_delay = waiter_delay
        self.final_log_wait = final_log_wait

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "job_name": self.job_name,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
                "waiter_delay": self.waiter_delay,
                "final_log_wait": self.final_log_wait,
            },
        )

    def _settings(self) -> dict[str, Any]:
        return client_settings(
            self.aws_conn_id, self.region_name, self.verify, self.botocore_config
        )

    def _emit(self, stream: LogStream, message: str) -> None:
        self.log.info("[%s] %s", stream.container, message)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        batch_hook = SidecarBatchHook(**self._settings())
        logs_hook = SidecarLogsHook(**self._settings())
        tail = LogTail()
        seen: JobStatus | None = None
        async with (
            await batch_hook.get_async_conn() as batch,
            await logs_hook.get_async_conn() as logs,
        ):
            while True:
                answer = await batch.describe_jobs(jobs=[self.job_id])
                if not answer["jobs"]:
                    yield TriggerEvent(self._lost())
                    return
                job = answer["jobs"][0]
                step = job_step(job)
                if step.status is not seen and not step.finished:
                    self.log.info("Batch job %s is %s", self.job_name, step.status.value)
                    seen = step.status
                tail.track(step.log_streams)
                await adrain(tail, logs, self._emit)
                if step.finished:
                    await self._final_drain(tail, logs, job.get("stoppedAt"))
                    self.log.info("Batch job %s is %s", self.job_name, step.status.value)
                    yield TriggerEvent({"result": step.to_event()})
                    return
                await asyncio.sleep(self.waiter_delay)

    async def _final_drain(self, tail: LogTail, logs: Any, stopped_at_ms: int | None) -> None:
        stopped = (stopped_at_ms or 0) / 1000 or time.time()
        while time.time() - stopped < self.final_log_wait:
            await asyncio.sleep(min(1.0, self.final_log_wait))
            await adrain(tail, logs, self._emit)

    def _lost(self) -> dict[str, Any]:
        lost = JobStep(
            self.job_id, self.job_name, JobStatus.FAILED, "Batch no longer knows the job", (), ()
        )
        return {"result": lost.to_event()}
