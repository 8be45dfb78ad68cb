"""The operator: register the job definition if missing, submit or re-attach, wait, report."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context
from botocore.exceptions import BotoCoreError, ClientError

from airflow_sidecar_batch.exceptions import BatchJobFailedError, BatchJobTimeoutError
from airflow_sidecar_batch.hooks import (
    LOG_READ_ATTEMPTS,
    SidecarBatchHook,
    SidecarLogsHook,
    client_settings,
)
from airflow_sidecar_batch.job_definition import (
    ensure_job_definition,
    prepare_job_definition,
    refresh_job_definition,
)
from airflow_sidecar_batch.job_identity import TaskIdentity, find_previous_job
from airflow_sidecar_batch.job_status import JobStep, LogStream, job_step
from airflow_sidecar_batch.links import (
    EXTRA_LINKS,
    persist_job_link,
    persist_log_links,
    reserve_log_links,
)
from airflow_sidecar_batch.logs import LogTail, drain
from airflow_sidecar_batch.submit_checks import (
    check_overrides,
    check_parameters,
    check_submit_size,
)
from airflow_sidecar_batch.triggers import LOG_POSITIONS_KEY, SidecarBatchJobTrigger


class SidecarBatchOperator(BaseOperator):
    """Run one AWS Batch multi-container job and wait for it, streaming every container's logs.

    The job definition is registered only when no ACTIVE revision has the same content. The
    payload is rendered by Jinja, serialised to JSON once and passed as the Batch parameter
    ``payload_parameter``, which the definition's commands reference as ``Ref::EVENT_JSON``.
    Every job carries its task instance's identity in its name and tags: a retried task whose
    job is still running attaches to it, and one whose job already succeeded succeeds.

    :param job_definition: the RegisterJobDefinition request: a dict, or the path of a JSON or
        YAML file (relative paths are read from the DAG's folder); rendered by Jinja. ECS habits
        (task-level cpu/memory, healthCheck with HEALTHY, ...) are converted, and every problem
        is reported at once before any AWS call.
    :param job_queue: the job queue to submit to.
    :param payload: a JSON-serialisable dict handed to the job; rendered by Jinja.
    :param container_overrides: per container name, ``environment`` (a dict), ``command`` and
        ``resourceRequirements`` overrides.
    :param parameters: further Batch parameters (``Ref::name`` values).
    :param job_name: the job's name before the identity suffix; ``<dag_id>-<task_id>`` if None.
    :param output_location: where the job writes its result; returned when it succeeds.
    :param tags: tags for the job, besides the identity tags.
    :param aws_conn_id: the Airflow connection to AWS or to the local endpoint.
    :param region_name: AWS Region; the connection's when None.
    :param verify: whether and how to verify TLS certificates.
    :param botocore_config: botocore ``Config`` settings, as a dict.
    :param deferrable: wait in the triggerer (True) or in the worker (False).
    :param waiter_delay: seconds between polls of the job.
    :param final_log_wait: seconds after the job stopped during which late log lines are awaited.
    :param queue_timeout: how long the job may wait for capacity (SUBMITTED to STARTING) before
        it is terminated and the task fails; None waits as long as ``execution_timeout`` allows.
    :param payload_parameter: the Batch parameter that carries the payload.
    """

    template_fields: Sequence[str] = (
        "job_definition",
        "job_queue",
        "payload",
        "container_overrides",
        "parameters",
        "job_name",
        "output_location",
        "tags",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "payload": "json",
        "job_definition": "json",
    }
    operator_extra_links = EXTRA_LINKS
    ui_color = "#f5a35a"

    def __init__(
        self,
        *,
        job_definition: Mapping[str, Any] | str,
        job_queue: str,
        payload: Mapping[str, Any] | None = None,
        container_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        parameters: Mapping[str, str] | None = None,
        job_name: str | None = None,
        output_location: str | None = None,
        tags: Mapping[str, str] | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        deferrable: bool = True,
        waiter_delay: float = 10.0,
        final_log_wait: float = 5.0,
        queue_timeout: timedelta | None = timedelta(hours=1),
        payload_parameter: str = "EVENT_JSON",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_definition = job_definition
        self.job_queue = job_queue
        self.payload = payload
        self.container_overrides = container_overrides
        self.parameters = parameters
        self.job_name = job_name
        self.output_location = output_location
        self.tags = tags
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.deferrable = deferrable
        self.waiter_delay = waiter_delay
        self.final_log_wait = final_log_wait
        self.queue_timeout = queue_timeout
        self.payload_parameter = payload_parameter

    def _settings(
        self, region_name: str | None = None, max_attempts: int | None = None
    ) -> dict[str, Any]:
        region = region_name or self.region_name
        return client_settings(
            self.aws_conn_id, region, self.verify, self.botocore_config, max_attempts
        )

    def execute(self, context: Context) -> dict[str, Any]:
        started = time.time()
        hook = SidecarBatchHook(**self._settings())
        compiled = prepare_job_definition(self._definition_source())
        identity = TaskIdentity.from_context(context)
        job_name = identity.job_name(self.job_name or f"{self.dag_id}-{self.task_id}")
        # Every check of the request runs here, before any AWS call.
        request = self._submit_request(compiled.request, job_name, identity)

        job = find_previous_job(hook, self.job_queue, job_name, identity)
        step = job_step(job) if job else None
        if step is not None and step.succeeded:
            self.log.info(
                "Batch job %s (%s) already SUCCEEDED; not submitting again", job_name, step.job_id
            )
            return self.execute_complete(
                context, {"result": step.to_event(), "outcome": "finished"}
            )
        if step is not None and not step.finished:
            self.log.info(
                "Attaching to Batch job %s (%s), %s", job_name, step.job_id, step.status.value
            )
            job_id = step.job_id
        else:
            arn = ensure_job_definition(hook, compiled.request)
            job_id = self._submit(hook, compiled.request, request, arn)
        self._job_id = job_id
        persist_job_link(context, self, job_id, hook.conn_region_name, hook.conn_partition)

        trigger = SidecarBatchJobTrigger(
            job_id=job_id,
            job_name=job_name,
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            botocore_config=self.botocore_config,
            waiter_delay=self.waiter_delay,
            final_log_wait=self.final_log_wait,
            queue_deadline=started + self.queue_timeout.total_seconds()
            if self.queue_timeout
            else None,
            run_deadline=(
                started + self.execution_timeout.total_seconds() if self.execution_timeout else None
            ),
            identity=asdict(identity),
        )
        if self.deferrable:
            # Nothing read yet: the trigger finds this at once instead of asking for a missing
            # key, which the execution API answers only after its retries.
            context["ti"].xcom_push(key=LOG_POSITIONS_KEY, value={})
            reserve_log_links(context)
            # No Airflow timeout: the trigger's own deadlines terminate the job before failing,
            # which a trigger timeout (it runs neither on_kill nor cleanup) would not.
            self.defer(trigger=trigger, method_name="execute_complete")
        try:
            event = _wait_in_worker(hook, trigger, self)
        except BaseException as stopped:
            # execution_timeout, a kill or a crash while waiting here: the job must not outlive
            # the task that watched it.
            reason = f"the Airflow task stopped waiting for it ({type(stopped).__name__})"
            self.log.info("Terminating Batch job %s: %s", job_id, reason)
            hook.terminate_job(job_id, reason)
            raise
        return self.execute_complete(context, event)

    def _definition_source(self) -> Mapping[str, Any] | str | Path:
        source = self.job_definition
        if isinstance(source, str) and source.rstrip().endswith((".json", ".yaml", ".yml")):
            path = Path(source)
            if not path.is_absolute() and self.has_dag():
                path = Path(self.dag.folder) / path
            return path
        return source

    def _submit(
        self, hook: SidecarBatchHook, definition: dict[str, Any], request: dict[str, Any], arn: str
    ) -> str:
        request = {**request, "jobDefinition": arn}
        check_submit_size(request)
        try:
            job = hook.submit_job(request)
        except ClientError:
            # Someone may have deregistered the revision since ensure; ensure once more.
            fresh = refresh_job_definition(hook, definition, arn)
            if fresh is None:
                raise
            job = hook.submit_job({**request, "jobDefinition": fresh})
        self.log.info(
            "Submitted Batch job %s (%s) to queue %s", job["jobName"], job["jobId"], self.job_queue
        )
        return job["jobId"]

    def _submit_request(
        self, definition: dict[str, Any], job_name: str, identity: TaskIdentity
    ) -> dict[str, Any]:
        """Build and check the SubmitJob request; the definition's ARN is put in at submit."""
        overrides = check_overrides(definition, self.container_overrides or {})
        parameters = dict(self.parameters or {})
        if self.payload is not None:
            parameters[self.payload_parameter] = json.dumps(self.payload, separators=(",", ":"))
        check_parameters(definition, parameters, container_overrides=overrides)
        request: dict[str, Any] = {
            "jobName": job_name,
            "jobQueue": self.job_queue,
            # The ARN is longer than the name by less than 100 bytes; checked again at submit.
            "jobDefinition": definition["jobDefinitionName"],
            "parameters": parameters,
            "tags": {**(self.tags or {}), **identity.tags()},
        }
        if overrides:
            request["ecsPropertiesOverride"] = {"taskProperties": [{"containers": overrides}]}
        check_submit_size(request)
        return request

    def _emit(self, stream: LogStream, message: str) -> None:
        self.log.info("[%s] %s", stream.container, message)

    def on_kill(self) -> None:
        """Terminate the job when the task is killed while it waits in the worker.

        A deferred task is never killed here: its trigger's ``on_kill`` terminates the job.
        """
        job_id = getattr(self, "_job_id", None)
        if job_id is None:
            return
        reason = f"Airflow task {self.dag_id}.{self.task_id} was killed while waiting"
        self.log.info("Terminating Batch job %s: %s", job_id, reason)
        SidecarBatchHook(**self._settings()).terminate_job(job_id, reason)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: read what is left of the logs, then succeed or raise."""
        logs = event.get("logs") or {}
        last_lines = _merge_lines(event.get("last_lines") or {}, self._read_rest_of_logs(logs))
        if logs.get("streams"):
            hook = SidecarBatchHook(**self._settings())
            persist_log_links(
                context, self, logs["streams"], hook.conn_region_name, hook.conn_partition
            )
        step = JobStep.from_event(event["result"])
        outcome = event.get("outcome", "finished")
        if outcome in ("queue_timeout", "run_timeout"):
            raise BatchJobTimeoutError(_timeout_message(step, outcome, event, self.job_queue))
        if not step.succeeded:
            raise BatchJobFailedError(step.failure_message(last_lines))
        self.log.info("Batch job %s SUCCEEDED", step.job_name)
        return {
            "job_id": step.job_id,
            "job_name": step.job_name,
            "status": step.status.value,
            "output_location": self.output_location,
        }

    def _read_rest_of_logs(self, logs: dict[str, Any] | None) -> dict[str, list[str]]:
        """Read each stream on from where the trigger stopped, once, without waiting.

        :return: the lines read, by container, for the failure message.
        """
        read: dict[str, list[str]] = {}
        if not logs or not logs.get("streams"):
            return read

        def emit(stream: LogStream, message: str) -> None:
            self._emit(stream, message)
            read.setdefault(stream.container, []).append(message)

        tail = LogTail(logs.get("tokens"))
        tail.track(LogStream(**stream) for stream in logs["streams"])
        for region in tail.regions():
            settings = self._settings(region, LOG_READ_ATTEMPTS)
            drain(tail, SidecarLogsHook(**settings).conn, emit, region)
        return read


def _wait_in_worker(
    hook: SidecarBatchHook, trigger: SidecarBatchJobTrigger, operator: SidecarBatchOperator
) -> dict[str, Any]:
    """Wait in the worker: the trigger's decisions and deadlines, with synchronous clients."""
    watch = trigger.watch(operator.log)
    logs: dict[str | None, Any] = {}

    def read_logs() -> None:
        for region in watch.tail.regions():
            if region not in logs:
                settings = operator._settings(region, LOG_READ_ATTEMPTS)
                logs[region] = SidecarLogsHook(**settings).conn
            drain(watch.tail, logs[region], watch.emit, region)

    while True:
        try:
            jobs = hook.describe_jobs([trigger.job_id])
        except (ClientError, BotoCoreError) as error:
            if not watch.poll_failed(error, trigger.waiter_delay):
                raise
            time.sleep(trigger.waiter_delay)
            continue
        verdict = watch.observe(jobs[0] if jobs else None)
        read_logs()
        if verdict.outcome == "finished":
            while watch.awaiting_late_lines():
                time.sleep(1.0)
                read_logs()
            return watch.event(verdict)
        if verdict.terminate:
            hook.terminate_job(trigger.job_id, watch.terminating(verdict))
            return watch.event(verdict)
        time.sleep(trigger.waiter_delay)


def _merge_lines(
    earlier: dict[str, list[str]], later: dict[str, list[str]], keep: int = 20
) -> dict[str, list[str]]:
    """Each container's last ``keep`` lines, from the trigger's and then the worker's reads."""
    names = [*earlier, *(name for name in later if name not in earlier)]
    return {name: [*earlier.get(name, []), *later.get(name, [])][-keep:] for name in names}


def _timeout_message(step: JobStep, outcome: str, event: dict[str, Any], queue: str) -> str:
    if outcome == "queue_timeout":
        return (
            f"Batch job {step.job_name} ({step.job_id}) was terminated: {event.get('reason')}. "
            f"Status reason: {step.status_reason or 'none given'}. Check that the compute "
            f"environments of job queue {queue!r} are ENABLED and VALID and have room for the "
            "job's vCPUs and memory, or raise queue_timeout."
        )
    return (
        f"Batch job {step.job_name} ({step.job_id}) was terminated: {event.get('reason')}; "
        "raise the task's execution_timeout if the job needs longer."
    )
