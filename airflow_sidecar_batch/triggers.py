"""The deferrable trigger: wait for a Batch job while streaming every container's logs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from botocore.exceptions import BotoCoreError, ClientError

from airflow_sidecar_batch.hooks import (
    LOG_READ_ATTEMPTS,
    SidecarBatchHook,
    SidecarLogsHook,
    client_settings,
)
from airflow_sidecar_batch.logs import adrain
from airflow_sidecar_batch.watch import JobWatch

#: The XCom that keeps each log stream's read position while the task is deferred.
LOG_POSITIONS_KEY = "sidecar_batch_log_positions"


class SidecarBatchJobTrigger(BaseTrigger):
    """Poll a Batch job until it finishes, forwarding new lines of every container as they come.

    Each forwarded line is prefixed with its container's name. Once the job has finished, the
    streams are read again until ``final_log_wait`` seconds have passed since the job stopped,
    and the event carries each stream's position, so the operator can read what is left
    without waiting again. Deadlines are absolute times (seconds since the epoch), so a
    trigger rebuilt after a triggerer restart keeps them.

    :param job_id: the Batch job to follow.
    :param job_name: the job's name, for messages.
    :param aws_conn_id: the Airflow connection to AWS (or the local endpoint).
    :param region_name: AWS Region; the connection's when None.
    :param verify: whether and how to verify TLS certificates.
    :param botocore_config: botocore ``Config`` settings, as a dict.
    :param waiter_delay: seconds between polls of the job.
    :param final_log_wait: seconds after the job stopped during which late lines are awaited.
    :param queue_deadline: when a job still waiting for capacity is terminated.
    :param run_deadline: when a job that has not finished is terminated.
    :param identity: the task instance the job runs for (see
        :class:`~airflow_sidecar_batch.job_identity.TaskIdentity`); ``on_kill`` checks it.
    :param last_lines: how many of each container's last lines the event carries.
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
        queue_deadline: float | None = None,
        run_deadline: float | None = None,
        identity: dict[str, Any] | None = None,
        last_lines: int = 20,
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
        self.queue_deadline = queue_deadline
        self.run_deadline = run_deadline
        self.identity = identity
        self.last_lines = last_lines

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
                "queue_deadline": self.queue_deadline,
                "run_deadline": self.run_deadline,
                "identity": self.identity,
                "last_lines": self.last_lines,
            },
        )

    def _settings(
        self, region_name: str | None = None, max_attempts: int | None = None
    ) -> dict[str, Any]:
        region = region_name or self.region_name
        return client_settings(
            self.aws_conn_id, region, self.verify, self.botocore_config, max_attempts
        )

    def watch(self, log: Any, tokens: dict[str, str] | None = None) -> JobWatch:
        """Return the decisions this trigger makes, for a loop that logs to ``log``."""
        return JobWatch(
            self.job_id,
            self.job_name,
            log,
            final_log_wait=self.final_log_wait,
            queue_deadline=self.queue_deadline,
            run_deadline=self.run_deadline,
            last_lines=self.last_lines,
            tokens=tokens,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        progress = _Progress(self.identity, self.log)
        watch = self.watch(self.log, await progress.load())
        async with contextlib.AsyncExitStack() as clients:
            batch = await clients.enter_async_context(
                await SidecarBatchHook(**self._settings()).get_async_conn()
            )
            logs = _LogClients(self, clients, watch)
            while True:
                try:
                    jobs = (await batch.describe_jobs(jobs=[self.job_id]))["jobs"]
                except (ClientError, BotoCoreError) as error:
                    if not watch.poll_failed(error, self.waiter_delay):
                        raise
                    await asyncio.sleep(self.waiter_delay)
                    continue
                verdict = watch.observe(jobs[0] if jobs else None)
                await logs.drain()
                await progress.save(watch.tail.tokens())
                if verdict.outcome == "finished":
                    while watch.awaiting_late_lines():
                        await asyncio.sleep(1.0)
                        await logs.drain()
                        await progress.save(watch.tail.tokens())
                    yield TriggerEvent(watch.event(verdict))
                    return
                if verdict.terminate:
                    await batch.terminate_job(jobId=self.job_id, reason=watch.terminating(verdict))
                    yield TriggerEvent(watch.event(verdict))
                    return
                await asyncio.sleep(self.waiter_delay)

    async def on_kill(self) -> None:
        """Terminate the job when a user marked the deferred task failed or cleared it."""
        if await self._task_deferred_again():
            self.log.info("Not terminating Batch job %s: its task is deferred again", self.job_name)
            return
        reason = "the Airflow task was marked failed or cleared while it waited for the job"
        if self.identity:
            reason = (
                f"Airflow task {self.identity['dag_id']}.{self.identity['task_id']} "
                f"(run {self.identity['run_id']}) was marked failed or cleared"
            )
        self.log.info("Terminating Batch job %s: %s", self.job_name, reason)
        async with await SidecarBatchHook(**self._settings()).get_async_conn() as batch:
            await batch.terminate_job(jobId=self.job_id, reason=reason[:255])

    async def _task_deferred_again(self) -> bool:
        """Tell a user's kill from a trigger that merely moved, or a retry that re-attached."""
        if not self.identity:
            return False
        try:
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

            states = await asyncio.to_thread(
                RuntimeTaskInstance.get_task_states,
                dag_id=self.identity["dag_id"],
                task_ids=[self.identity["task_id"]],
                run_ids=[self.identity["run_id"]],
                map_index=self.identity["map_index"],
            )
        except Exception:
            # Without the check, a user's kill must still stop the job and its bill.
            self.log.warning("Could not read the task's state; terminating as asked", exc_info=True)
            return False
        # {run_id: {task_id: state}}: one entry, since the map index narrows it to this task.
        return "deferred" in states.get(self.identity["run_id"], {}).values()


class _LogClients:
    """One async CloudWatch Logs client per Region, opened when a stream first needs it."""

    def __init__(
        self, trigger: SidecarBatchJobTrigger, stack: contextlib.AsyncExitStack, watch: JobWatch
    ) -> None:
        self._trigger = trigger
        self._stack = stack
        self._watch = watch
        self._clients: dict[str | None, Any] = {}

    async def drain(self) -> None:
        tail = self._watch.tail
        for region in tail.regions():
            client = self._clients.get(region)
            if client is None:
                hook = SidecarLogsHook(**self._trigger._settings(region, LOG_READ_ATTEMPTS))
                client = await self._stack.enter_async_context(await hook.get_async_conn())
                self._clients[region] = client
            await adrain(tail, client, self._watch.emit, region)


class _Progress:
    """Each log stream's read position, kept in XCom so a restarted triggerer goes on from it.

    A triggerer restart rebuilds the trigger from its kwargs, which cannot change; without the
    saved positions it would forward every line again. Airflow clears the XCom when a new try
    starts, so a retried task reads its job's logs from the start, into its own log.
    """

    KEY = LOG_POSITIONS_KEY

    def __init__(self, identity: dict[str, Any] | None, log: Any) -> None:
        self._where = (
            {
                "dag_id": identity["dag_id"],
                "task_id": identity["task_id"],
                "run_id": identity["run_id"],
                "map_index": identity["map_index"],
            }
            if identity
            else None
        )
        self._log = log
        self._saved: dict[str, str] = {}

    async def load(self) -> dict[str, str]:
        if self._where is None:
            return {}
        try:
            saved = await _xcom("get_one", key=self.KEY, **self._where)
        except Exception:
            # Outside a triggerer (a test, a script) there is no XCom; start from the top.
            self._log.debug("No saved log positions", exc_info=True)
            self._where = None
            return {}
        self._saved = dict(saved or {})
        if self._saved:
            self._log.info("Going on from saved positions in %d log stream(s)", len(self._saved))
        return dict(self._saved)

    async def save(self, tokens: dict[str, str]) -> None:
        if self._where is None or tokens == self._saved:
            return
        try:
            await _xcom("set", key=self.KEY, value=tokens, **self._where)
        except Exception:
            self._log.warning("Could not save log positions; a restart may repeat lines")
            return
        self._saved = dict(tokens)


async def _xcom(method: str, **kwargs: Any) -> Any:
    """Call XCom's async method; where it cannot run (``airflow dags test`` runs triggers
    inline, without the triggerer's async channel), its sync twin in a thread."""
    from airflow.sdk.execution_time.xcom import XCom

    try:
        return await getattr(XCom, f"a{method}")(**kwargs)
    except Exception:
        return await asyncio.to_thread(getattr(XCom, method), **kwargs)
