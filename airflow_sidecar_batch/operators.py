"""The operator: register the job definition if missing, submit, wait, report."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context

from airflow_sidecar_batch.exceptions import BatchJobFailedError
from airflow_sidecar_batch.hooks import SidecarBatchHook, SidecarLogsHook, client_settings
from airflow_sidecar_batch.job_definition import ensure_job_definition, load_job_definition
from airflow_sidecar_batch.job_status import JobStatus, JobStep, LogStream, job_step
from airflow_sidecar_batch.logs import LogTail, drain
from airflow_sidecar_batch.triggers import SidecarBatchJobTrigger


class SidecarBatchOperator(BaseOperator):
    """Run one AWS Batch multi-container job and wait for it, streaming every container's logs.

    The job definition is registered only when no ACTIVE revision has the same content. The
    payload is rendered by Jinja, serialised to JSON once and passed as the Batch parameter
    ``payload_parameter``, which the definition's commands reference as ``Ref::EVENT_JSON``.

    :param job_definition: the RegisterJobDefinition request: a dict, or the path of a JSON or
        YAML file (relative paths are read from the DAG's folder); rendered by Jinja.
    :param job_queue: the job queue to submit to.
    :param payload: a JSON-serialisable dict handed to the job; rendered by Jinja.
    :param container_overrides: per container name, ``environment`` (a dict), ``command`` and
        ``resourceRequirements`` overrides.
    :param parameters: further Batch parameters (``Ref::name`` values).
    :param job_name: the job's name; by default ``<dag_id>-<task_id>``.
    :param output_location: where the job writes its result; returned when it succeeds.
    :param tags: tags for the job.
    :param aws_conn_id: the Airflow connection to AWS or to the local endpoint.
    :param region_name: AWS Region; the connection's when None.
    :param verify: whether and how to verify TLS certificates.
    :param botocore_config: botocore ``Config`` settings, as a dict.
    :param deferrable: wait in the triggerer (True) or in the worker (False).
    :param waiter_delay: seconds between polls of the job.
    :param final_log_wait: seconds after the job stopped during which late log lines are awaited.
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
        self.payload_parameter = payload_parameter

    def _settings(self) -> dict[str, Any]:
        return client_settings(
            self.aws_conn_id, self.region_name, self.verify, self.botocore_config
        )

    def execute(self, context: Context) -> dict[str, Any]:
        hook = SidecarBatchHook(**self._settings())
        definition = load_job_definition(self._definition_source(context))
        definition_arn = ensure_job_definition(hook, definition)

        request = self._submit_request(context, definition_arn)
        job = hook.submit_job(request)
        self.log.info(
            "Submitted Batch job %s (%s) to queue %s", job["jobName"], job["jobId"], self.job_queue
        )
        trigger = SidecarBatchJobTrigger(
            job_id=job["jobId"],
            job_name=job["jobName"],
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            botocore_config=self.botocore_config,
            waiter_delay=self.waiter_delay,
            final_log_wait=self.final_log_wait,
        )
        if self.deferrable:
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                timeout=self.execution_timeout,
            )
        return self.execute_complete(context, self._wait(hook, job["jobId"], job["jobName"]))

    def _definition_source(self, context: Context) -> Mapping[str, Any] | str | Path:
        source = self.job_definition
        if isinstance(source, str) and source.rstrip().endswith((".json", ".yaml", ".yml")):
            path = Path(source)
            if not path.is_absolute() and self.has_dag():
                path = Path(self.dag.folder) / path
            return path
        return source

    def _submit_request(self, context: Context, definition_arn: str) -> dict[str, Any]:
        parameters = dict(self.parameters or {})
        if self.payload is not None:
            parameters[self.payload_parameter] = json.dumps(self.payload, separators=(",", ":"))
        request: dict[str, Any] = {
            "jobName": self._job_name(context),
            "jobQueue": self.job_queue,
            "jobDefinition": definition_arn,
            "parameters": parameters,
        }
        if self.tags:
            request["tags"] = dict(self.tags)
        if self.container_overrides:
            request["ecsPropertiesOverride"] = {
                "taskProperties": [
                    {"containers": [_override(n, o) for n, o in self.container_overrides.items()]}
                ]
            }
        return request

    def _job_name(self, context: Context) -> str:
        name = self.job_name or f"{self.dag_id}-{self.task_id}"
        return re.sub(r"[^A-Za-z0-9_-]+", "-", name).lstrip("-_")[:128]

    def _wait(self, hook: SidecarBatchHook, job_id: str, job_name: str) -> dict[str, Any]:
        """Wait in the worker, with the same decisions and log lines as the trigger."""
        logs = SidecarLogsHook(**self._settings()).conn
        tail = LogTail()
        seen: JobStatus | None = None
        while True:
            description = hook.describe_job(job_id)
            step = job_step(description)
            if step.status is not seen and not step.finished:
                self.log.info("Batch job %s is %s", job_name, step.status.value)
                seen = step.status
            tail.track(step.log_streams)
            drain(tail, logs, self._emit)
            if step.finished:
                stopped = (description.get("stoppedAt") or 0) / 1000 or time.time()
                while time.time() - stopped < self.final_log_wait:
                    time.sleep(min(1.0, self.final_log_wait))
                    drain(tail, logs, self._emit)
                return {"result": step.to_event()}
            time.sleep(self.waiter_delay)

    def _emit(self, stream: LogStream, message: str) -> None:
        self.log.info("[%s] %s", stream.container, message)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: succeed with the job's result or raise why it failed."""
        step = JobStep.from_event(event["result"])
        if not step.succeeded:
            raise BatchJobFailedError(step.failure_message())
        self.log.info("Batch job %s SUCCEEDED", step.job_name)
        return {
            "job_id": step.job_id,
            "job_name": step.job_name,
            "status": step.status.value,
            "output_location": self.output_location,
        }


def _override(container: str, override: Mapping[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": container}
    environment = override.get("environment")
    if isinstance(environment, Mapping):
        entry["environment"] = [{"name": k, "value": str(v)} for k, v in environment.items()]
    elif environment is not None:
        entry["environment"] = list(environment)
    for field in ("command", "resourceRequirements"):
        if field in override:
            entry[field] = list(override[field])
    return entry


__all__ = ["SidecarBatchOperator"]
