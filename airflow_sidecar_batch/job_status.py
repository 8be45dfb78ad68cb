"""What a Batch job description means, as one pure function both wait loops call.

The deferred trigger and the synchronous wait ask the same question of every ``DescribeJobs``
answer: is the job finished, did it succeed, and which log streams exist by now.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

#: Exit codes of a program stopped by its container engine: none yet, clean, SIGTERM, SIGKILL.
_STOP_CODES = (None, 0, 143, 137)

#: Where the awslogs driver writes when a container names no group.
DEFAULT_LOG_GROUP = "/aws/batch/job"


class JobStatus(str, Enum):
    """The states of a Batch job, in the order a job passes through them."""

    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNABLE = "RUNNABLE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclass(frozen=True)
class LogStream:
    """One container's CloudWatch log stream."""

    container: str
    group: str
    name: str
    region: str | None = None


@dataclass(frozen=True)
class ContainerReport:
    """How one container of the job's latest attempt is doing or ended."""

    name: str
    essential: bool
    exit_code: int | None
    reason: str | None


@dataclass(frozen=True)
class JobStep:
    """The answer to "given this job description, what happens next?"."""

    job_id: str
    job_name: str
    status: JobStatus
    status_reason: str | None
    containers: tuple[ContainerReport, ...]
    log_streams: tuple[LogStream, ...]

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def succeeded(self) -> bool:
        return self.status is JobStatus.SUCCEEDED

    def failure_message(self, last_lines: dict[str, list[str]] | None = None) -> str:
        """Say why the job failed: its status reason, each container, then the last lines.

        The essential containers come first. A non-essential container that was stopped because
        an essential one ended is reported as the normal stop it is, not as a failure.

        :param last_lines: the last lines each container printed, by container name.
        """
        lines = [f"Batch job {self.job_name} ({self.job_id}) {self.status.value}"]
        if self.status_reason:
            lines[0] += f": {self.status_reason}"
        essential_ended = any(c.essential and c.exit_code is not None for c in self.containers)
        for container in sorted(self.containers, key=lambda c: not c.essential):
            lines.append(f"  {container.name}: {_describe(container, essential_ended)}")
        failing = [c for c in self.containers if c.essential and c.exit_code != 0]
        for container in failing:
            recent = (last_lines or {}).get(container.name)
            if recent:
                lines.append(f"Last lines of {container.name}:")
                lines.extend(f"    {line}" for line in recent)
        return "\n".join(lines)

    def to_event(self) -> dict[str, Any]:
        """Return the JSON-native form that travels in a trigger event."""
        return {
            "job_id": self.job_id,
            "job_name": self.job_name,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "containers": [asdict(container) for container in self.containers],
        }

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> JobStep:
        """Rebuild a step from :meth:`to_event`'s output (log streams are not carried)."""
        return cls(
            job_id=event["job_id"],
            job_name=event["job_name"],
            status=JobStatus(event["status"]),
            status_reason=event.get("status_reason"),
            containers=tuple(ContainerReport(**c) for c in event.get("containers", [])),
            log_streams=(),
        )


def job_step(job: dict[str, Any]) -> JobStep:
    """Read one ``DescribeJobs`` entry of an ``ecsProperties`` job.

    Per-container details live under ``ecsProperties.taskProperties[].containers[]`` (the current
    attempt) and ``attempts[].taskProperties[].containers[]`` (earlier ones); the top-level
    ``container`` is empty for these jobs. A container has a log stream only once it ran.
    """
    tasks = (job.get("ecsProperties") or {}).get("taskProperties") or []
    current = [c for task in tasks for c in task.get("containers") or []]
    settings = {c.get("name"): _log_settings(c) for c in current}

    streams: dict[str, LogStream] = {}
    attempt_containers = [
        c
        for attempt in job.get("attempts") or []
        for task in attempt.get("taskProperties") or []
        for c in task.get("containers") or []
    ]
    for container in [*attempt_containers, *current]:
        stream_name = container.get("logStreamName")
        if stream_name and stream_name not in streams:
            group, region = settings.get(container.get("name"), (DEFAULT_LOG_GROUP, None))
            streams[stream_name] = LogStream(container["name"], group, stream_name, region)

    return JobStep(
        job_id=job["jobId"],
        job_name=job.get("jobName", job["jobId"]),
        status=JobStatus(job["status"]),
        status_reason=job.get("statusReason"),
        containers=tuple(
            ContainerReport(
                name=c.get("name", "?"),
                essential=c.get("essential", True),
                exit_code=c.get("exitCode"),
                reason=c.get("reason"),
            )
            for c in current
        ),
        log_streams=tuple(streams.values()),
    )


def _describe(container: ContainerReport, essential_ended: bool) -> str:
    role = "essential" if container.essential else "non-essential"
    if not container.essential and essential_ended and container.exit_code in _STOP_CODES:
        return f"{role}, stopped with the task when the essential container ended (normal)"
    code = "no exit code" if container.exit_code is None else f"exit code {container.exit_code}"
    reason = f" ({container.reason})" if container.reason else ""
    return f"{role}, {code}{reason}"


def _log_settings(container: dict[str, Any]) -> tuple[str, str | None]:
    options = (container.get("logConfiguration") or {}).get("options") or {}
    return options.get("awslogs-group", DEFAULT_LOG_GROUP), options.get("awslogs-region")
