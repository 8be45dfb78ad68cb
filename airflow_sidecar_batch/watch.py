"""Watching one Batch job: the decisions both wait loops share.

The deferred trigger (async clients, in the triggerer) and the synchronous wait (sync clients, in
the worker) differ only in how they call AWS. Everything they decide, given a ``DescribeJobs``
answer, lives here: which streams to read, what to log, whether the job finished or overran a
deadline, and what the event handed to ``execute_complete`` holds.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from airflow_sidecar_batch.hooks import is_transient
from airflow_sidecar_batch.job_status import JobStatus, JobStep, LogStream, job_step
from airflow_sidecar_batch.logs import LogTail

#: States in which a job still waits for capacity; the queue deadline applies to them.
WAITING = frozenset(
    {JobStatus.SUBMITTED, JobStatus.PENDING, JobStatus.RUNNABLE, JobStatus.STARTING}
)


@dataclass(frozen=True)
class Verdict:
    """What to do after one poll: keep waiting, finish, or terminate the job and fail."""

    step: JobStep
    outcome: str | None = None  # "finished", "queue_timeout" or "run_timeout"
    reason: str | None = None

    @property
    def terminate(self) -> bool:
        return self.outcome in ("queue_timeout", "run_timeout")


class JobWatch:
    """Follow one job: its status, its containers' log streams and its deadlines.

    :param job_id: the Batch job.
    :param job_name: the job's name, for messages.
    :param log: where status lines and container lines go.
    :param final_log_wait: seconds after the job stopped during which late lines are awaited.
    :param queue_deadline: when a job still waiting for capacity must be terminated.
    :param run_deadline: when an unfinished job must be terminated.
    :param last_lines: how many of each container's last lines to keep for failure messages.
    :param tokens: log positions saved by an earlier watch of the same job.
    """

    def __init__(
        self,
        job_id: str,
        job_name: str,
        log: logging.Logger | Any,
        final_log_wait: float = 5.0,
        queue_deadline: float | None = None,
        run_deadline: float | None = None,
        last_lines: int = 20,
        tokens: dict[str, str] | None = None,
    ) -> None:
        self.job_id = job_id
        self.job_name = job_name
        self.log = log
        self.final_log_wait = final_log_wait
        self.queue_deadline = queue_deadline
        self.run_deadline = run_deadline
        self.tail = LogTail(tokens)
        self._recent: dict[str, deque[str]] = {}
        self._last_lines = last_lines
        self._seen: JobStatus | None = None
        self._stopped_at: float | None = None

    def observe(self, description: dict[str, Any] | None) -> Verdict:
        """Take one ``DescribeJobs`` entry (None: Batch no longer knows the job) and decide."""
        if description is None:
            lost = JobStep(
                self.job_id,
                self.job_name,
                JobStatus.FAILED,
                "Batch no longer knows the job",
                (),
                (),
            )
            return Verdict(lost, "finished")
        step = job_step(description)
        self.tail.track(step.log_streams)
        if step.finished:
            self._stopped_at = (description.get("stoppedAt") or 0) / 1000 or time.time()
            return Verdict(step, "finished")
        if step.status is not self._seen:
            self.log.info("Batch job %s is %s", self.job_name, step.status.value)
            self._seen = step.status
        now = time.time()
        if self.run_deadline is not None and now >= self.run_deadline:
            reason = (
                f"the Airflow task's execution_timeout passed while the job was {step.status.value}"
            )
            return Verdict(step, "run_timeout", reason)
        if (
            step.status in WAITING
            and self.queue_deadline is not None
            and now >= self.queue_deadline
        ):
            return Verdict(
                step,
                "queue_timeout",
                f"the job was still {step.status.value} at its queue deadline",
            )
        return Verdict(step)

    def poll_failed(self, error: Exception, retry_in: float) -> bool:
        """Decide on a failed ``DescribeJobs``: True to try again at the next poll, False to raise.

        Throttling, 5xx and network errors leave the job as it was, as far as anyone knows, so a
        poll that meets them costs the task no retry.
        """
        if not is_transient(error):
            return False
        self.log.warning(
            "Could not describe Batch job %s (%s); trying again in %s s",
            self.job_name,
            type(error).__name__,
            retry_in,
        )
        return True

    def terminating(self, verdict: Verdict) -> str:
        """Log and return the reason a job is terminated for, within Batch's 255 characters."""
        self.log.info("Terminating Batch job %s: %s", self.job_name, verdict.reason)
        return str(verdict.reason)[:255]

    def awaiting_late_lines(self) -> bool:
        """Whether lines may still arrive: the job stopped less than ``final_log_wait`` ago."""
        if self._stopped_at is None:
            # A job Batch no longer knows has no stop time and no lines left to wait for.
            return False
        return time.time() - self._stopped_at < self.final_log_wait

    def emit(self, stream: LogStream, message: str) -> None:
        """Log one container line, marked with its container, and remember it."""
        self.log.info("[%s] %s", stream.container, message)
        recent = self._recent.setdefault(stream.container, deque(maxlen=self._last_lines))
        recent.append(message)

    def event(self, verdict: Verdict) -> dict[str, Any]:
        """Return what ``execute_complete`` needs: the outcome, the log positions, last lines."""
        if verdict.outcome == "finished":
            self.log.info("Batch job %s is %s", self.job_name, verdict.step.status.value)
        return {
            "result": verdict.step.to_event(),
            "outcome": verdict.outcome,
            "reason": verdict.reason,
            "logs": {
                "streams": [asdict(stream) for stream in verdict.step.log_streams],
                "tokens": self.tail.tokens(),
            },
            "last_lines": {name: list(lines) for name, lines in self._recent.items()},
        }
