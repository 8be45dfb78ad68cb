"""Run the jobs submitted to the local endpoint, each container as a local program.

A job passes through the states AWS gives it. It waits in RUNNABLE for a free slot, gets a
network namespace of its own in STARTING (so every job has its own localhost, as every Fargate
task has), and turns RUNNING when its first container starts. Every line a container prints goes
to that container's CloudWatch log stream before the job can be seen to finish, unless a
``delay_logs`` fault holds it back (:mod:`~airflow_sidecar_batch.local.faults`), as CloudWatch
Logs may on AWS.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_sidecar_batch.local.backend import BatchBackend, now_ms
from airflow_sidecar_batch.local.faults import Faults
from airflow_sidecar_batch.local.images import ImageMap, UnknownImageError, argv_for
from airflow_sidecar_batch.local.logsink import LogSink
from airflow_sidecar_batch.local.runner import ContainerOutcome, ContainerSpec, TaskRunner
from airflow_sidecar_batch.local.sandbox import NetworkSandbox, SharedHostNetwork

log = logging.getLogger(__name__)

#: What the awslogs driver names a container's stream when no ``awslogs-stream-prefix`` is set;
#: AWS uses the job definition's name in its place (an assumption stated in the docs).
_STREAM = "{prefix}/{container}/{task_id}"


@dataclass
class _Running:
    runner: TaskRunner | None = None
    terminated: str | None = None


class JobExecutor:
    """Start, watch and stop local jobs for a :class:`BatchBackend`.

    :param images: which local program each image stands for.
    :param logs: where container lines go.
    :param serve_inside: serves the endpoint on a socket inside a job's namespace, for the job
        of the given name; returns a callable that stops serving.
    :param endpoint_port: the endpoint's port, the same inside every namespace.
    :param max_jobs: how many jobs may run at once.
    :param faults: the fault rules to follow (``hold_runnable``, ``exit_code``); none when None.
    """

    def __init__(
        self,
        images: ImageMap,
        logs: LogSink,
        serve_inside: Callable[[Any, str], Callable[[], None]],
        endpoint_port: int,
        max_jobs: int,
        stop_grace_seconds: float = 10.0,
        faults: Faults | None = None,
    ) -> None:
        self.images = images
        self.logs = logs
        self.serve_inside = serve_inside
        self.endpoint_port = endpoint_port
        self.isolated = NetworkSandbox.available()
        # Without namespaces every job shares this machine's localhost: two main apps would
        # fight over one port, so jobs then run one at a time.
        self.max_jobs = max_jobs if self.isolated else 1
        self.stop_grace_seconds = stop_grace_seconds
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._wakeup = threading.Condition(self._lock)
        self.backend: BatchBackend | None = None
        self.peak_jobs = 0
        self._active = 0
        self.faults = faults or Faults()
        # A held job waits on the condition below; a change of the rules may release it.
        self.faults.subscribe(self._rules_changed)

    def start(self, job: dict[str, Any]) -> None:
        """Run a freshly submitted job in a thread of its own."""
        with self._lock:
            self._running[job["jobId"]] = _Running()
        thread = threading.Thread(target=self._run, args=(job,), name=f"job-{job['jobId'][:8]}")
        thread.daemon = True
        thread.start()

    def terminate(self, job_id: str, reason: str) -> None:
        """Stop a job wherever it is; a finished job is left as it ended."""
        with self._lock:
            running = self._running.get(job_id)
            if running is None:
                return
            running.terminated = reason
            runner = running.runner
            self._wakeup.notify_all()
        if runner is not None:
            runner.stop(reason)

    def _rules_changed(self) -> None:
        with self._wakeup:
            self._wakeup.notify_all()

    @property
    def _backend(self) -> BatchBackend:
        if self.backend is None:
            raise RuntimeError("JobExecutor.backend must be set before jobs are started")
        return self.backend

    def _update(self, job_id: str, **fields: Any) -> None:
        self._backend.update_job(job_id, lambda job: job.update(fields))

    def _run(self, job: dict[str, Any]) -> None:
        job_id = job["jobId"]
        self._update(job_id, status="RUNNABLE")
        if not self._wait_for_slot(job_id, job["jobName"]):
            self._finish_unstarted(job_id)
            return
        try:
            self._run_attempt(job)
        except Exception as error:
            log.exception("Local job %s broke", job_id)
            self._update(
                job_id,
                status="FAILED",
                statusReason=f"local endpoint error: {error}",
                stoppedAt=now_ms(),
            )
        finally:
            with self._wakeup:
                self._active -= 1
                self._running.pop(job_id, None)
                self._wakeup.notify_all()

    def _wait_for_slot(self, job_id: str, job_name: str) -> bool:
        """Wait in RUNNABLE until a slot frees; False when the job is terminated meanwhile.

        A ``hold_runnable`` fault keeps the job here, without a slot, for its seconds counted from
        now, or until the rule is removed.
        """
        runnable_since = time.monotonic()
        held = False
        with self._wakeup:
            while not self._running[job_id].terminated:
                hold = self.faults.hold_seconds(job_name)
                left = 0.0 if hold is None else hold - (time.monotonic() - runnable_since)
                if left > 0:
                    if not held:
                        held = True
                        self.faults.record("hold_runnable")
                        log.info("Local job %s held in RUNNABLE by a fault", job_id)
                    self._wakeup.wait(None if left == math.inf else left)
                    continue
                if self._active < self.max_jobs:
                    self._active += 1
                    self.peak_jobs = max(self.peak_jobs, self._active)
                    return True
                self._wakeup.wait()
        return False

    def _finish_unstarted(self, job_id: str) -> None:
        with self._lock:
            reason = self._running.pop(job_id).terminated
        self._update(job_id, status="FAILED", statusReason=reason, stoppedAt=now_ms())

    def _run_attempt(self, job: dict[str, Any]) -> None:
        job_id = job["jobId"]
        task_id = uuid.uuid4().hex
        task_arn = self._backend.arn("task", task_id).replace(":batch:", ":ecs:")
        self._update(job_id, status="STARTING")
        containers = job["ecsProperties"]["taskProperties"][0]["containers"]
        specs = []
        for container in containers:
            try:
                specs.append(self._spec(job, container))
            except UnknownImageError as error:
                self._fail_to_start(job_id, container["name"], error)
                return

        network = NetworkSandbox.create() if self.isolated else SharedHostNetwork()
        stop_serving = None
        try:
            sock = network.listen(self.endpoint_port)
            if sock is not None:
                stop_serving = self.serve_inside(sock, job["jobName"])
            containers = job["ecsProperties"]["taskProperties"][0]["containers"]
            streams = {c["name"]: self._stream_for(job, c, task_id) for c in containers}
            runner = TaskRunner(
                specs,
                on_output=lambda name, line: self.logs.write(*streams[name][:2], line),
                on_started=lambda name: self._container_started(
                    job_id, job["jobName"], name, streams[name]
                ),
                wrap=network.wrap,
                stop_grace_seconds=self.stop_grace_seconds,
            )
            with self._lock:
                self._running[job_id].runner = runner
                terminated = self._running[job_id].terminated
            if terminated:
                runner.stop(terminated)
            outcomes = runner.run()
        finally:
            if stop_serving is not None:
                stop_serving()
            network.close()
        outcomes = [self._inject_exit_code(job, o, streams[o.name]) for o in outcomes]
        self._finish(job_id, task_arn, outcomes)

    def _fail_to_start(self, job_id: str, name: str, error: UnknownImageError) -> None:
        """End a job whose container has no local program, as ECS ends one it cannot pull."""
        reason = f"CannotPullContainerError: {str(error).splitlines()[0]}"

        def change(job: dict[str, Any]) -> None:
            for container in job["ecsProperties"]["taskProperties"][0]["containers"]:
                if container["name"] == name:
                    container["reason"] = reason[:255]
            job.update(
                status="FAILED",
                statusReason=f"Task failed to start: container {name} has no local program",
                stoppedAt=now_ms(),
            )

        self._backend.update_job(job_id, change)

    def _stream_for(
        self, job: dict[str, Any], container: dict[str, Any], task_id: str
    ) -> tuple[str, str, str | None]:
        options = (container.get("logConfiguration") or {}).get("options") or {}
        group = options.get("awslogs-group", "/aws/batch/job")
        definition_name = job["jobDefinition"].split("/")[-1].split(":")[0]
        prefix = options.get("awslogs-stream-prefix", definition_name)
        name = _STREAM.format(prefix=prefix, container=container["name"], task_id=task_id)
        return group, name, options.get("awslogs-region")

    def _container_started(
        self, job_id: str, job_name: str, name: str, stream: tuple[str, str, str | None]
    ) -> None:
        group, stream_name, region = stream
        self.logs.open(group, stream_name, job_name=job_name, region=region)

        def change(job: dict[str, Any]) -> None:
            for container in job["ecsProperties"]["taskProperties"][0]["containers"]:
                if container["name"] == name:
                    container["logStreamName"] = stream[1]
            if job["status"] != "RUNNING":
                job.update(status="RUNNING", startedAt=now_ms())

        self._backend.update_job(job_id, change)

    def _inject_exit_code(
        self, job: dict[str, Any], outcome: ContainerOutcome, stream: tuple[str, str, str | None]
    ) -> ContainerOutcome:
        """Report the exit code an ``exit_code`` fault gives this container; say so in its log."""
        code = self.faults.exit_code(job["jobName"], outcome.name)
        # A container that never started has no exit code to replace, nor a stream to write to.
        if code is None or outcome.exit_code is None:
            return outcome
        self.logs.write(
            *stream[:2],
            f"local endpoint: fault injected: exit code {code} instead of {outcome.exit_code}",
        )
        self.faults.record("exit_code")
        log.info(
            "Local job %s: container %s exited %s, reported as %s by a fault",
            job["jobId"],
            outcome.name,
            outcome.exit_code,
            code,
        )
        return ContainerOutcome(outcome.name, code, outcome.reason)

    def _spec(self, job: dict[str, Any], container: dict[str, Any]) -> ContainerSpec:
        program = self.images.resolve(container["image"])
        command = container.get("command")
        if command is not None:
            command = [_substitute(arg, job["parameters"]) for arg in command]
        environment = {e["name"]: e.get("value", "") for e in container.get("environment", [])}
        environment.update(self._aws_environment(job))
        return ContainerSpec(
            name=container["name"],
            argv=argv_for(program, command),
            environment=environment,
            essential=container.get("essential", True),
            depends_on=[
                (d["containerName"], d["condition"]) for d in container.get("dependsOn", [])
            ],
        )

    def _aws_environment(self, job: dict[str, Any]) -> dict[str, str]:
        # What a program needs to reach this endpoint's S3 with plain boto3, plus what Batch
        # itself sets in every container.
        return {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.endpoint_port}",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": self._backend.region,
            "AWS_REGION": self._backend.region,
            "AWS_BATCH_JOB_ID": job["jobId"],
            "AWS_BATCH_JQ_NAME": job["jobQueue"].split("/")[-1],
            "AWS_BATCH_JOB_ATTEMPT": "1",
        }

    def _finish(self, job_id: str, task_arn: str, outcomes: list[ContainerOutcome]) -> None:
        by_name = {o.name: o for o in outcomes}
        with self._lock:
            terminated = (self._running.get(job_id) or _Running()).terminated

        def change(job: dict[str, Any]) -> None:
            task = job["ecsProperties"]["taskProperties"][0]
            task["taskArn"] = task_arn
            failed = False
            for container in task["containers"]:
                outcome = by_name[container["name"]]
                container["exitCode"] = outcome.exit_code
                if outcome.reason:
                    container["reason"] = outcome.reason
                if container.get("essential", True) and outcome.exit_code != 0:
                    failed = True
            stopped = now_ms()
            job["status"] = "FAILED" if failed or terminated else "SUCCEEDED"
            job["statusReason"] = terminated or "Essential container in task exited"
            job["stoppedAt"] = stopped
            job["attempts"].append(
                {
                    "startedAt": job.get("startedAt", stopped),
                    "stoppedAt": stopped,
                    "statusReason": job["statusReason"],
                    "taskProperties": [
                        {
                            "taskArn": task_arn,
                            "containers": [
                                {
                                    k: c[k]
                                    for k in ("name", "exitCode", "reason", "logStreamName")
                                    if k in c
                                }
                                for c in task["containers"]
                            ],
                        }
                    ],
                }
            )

        self._backend.update_job(job_id, change)
        log.info("Local job %s finished", job_id)


def _substitute(argument: str, parameters: dict[str, str]) -> str:
    """Replace a ``Ref::name`` argument with the job's parameter, as Batch does in commands."""
    if argument.startswith("Ref::") and argument[5:] in parameters:
        return parameters[argument[5:]]
    return argument
