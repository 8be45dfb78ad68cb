"""Which task instance a Batch job belongs to, so a retried task finds the job it submitted.

Every job carries its task instance's identity (DAG, task, run, map index, and how often the run
was cleared) in its name and its tags. Before submitting, the operator looks for a job with that
identity: a retry after a worker died right after SubmitJob attaches to that job instead of
submitting a second one, while a run cleared by a user gets a new identity, so a new job.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_sidecar_batch.submit_checks import job_name_for

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_sidecar_batch.hooks import SidecarBatchHook

#: The tags that carry the identity; Batch keeps them on the job for DescribeJobs to return.
TAG_PREFIX = "sidecar-batch:"
_DIGEST_LENGTH = 12


@dataclass(frozen=True)
class TaskIdentity:
    """The task instance a job runs for.

    The try number is left out on purpose: a retry is the same work. The run's clear number is
    in: Airflow raises it when a user clears the run or the task, asking for the work again.
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    clear_number: int = 0

    @classmethod
    def from_context(cls, context: Context) -> TaskIdentity:
        ti = context["ti"]
        dag_run = context.get("dag_run")
        clear_number = getattr(dag_run, "clear_number", None) or 0
        return cls(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1), clear_number)

    def digest(self) -> str:
        parts = (self.dag_id, self.task_id, self.run_id, str(self.map_index))
        # Clear number 0 adds nothing, so jobs of runs never cleared keep the same name.
        text = "\n".join((*parts, str(self.clear_number)) if self.clear_number else parts)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_DIGEST_LENGTH]

    def tags(self) -> dict[str, str]:
        return {
            f"{TAG_PREFIX}dag-id": self.dag_id,
            f"{TAG_PREFIX}task-id": self.task_id,
            f"{TAG_PREFIX}run-id": self.run_id,
            f"{TAG_PREFIX}map-index": str(self.map_index),
            f"{TAG_PREFIX}clear-number": str(self.clear_number),
        }

    def job_name(self, base: str) -> str:
        """Return ``base`` made valid, ending in the identity's digest, within 128 characters."""
        suffix = f"-{self.digest()}"
        return job_name_for(base)[: 128 - len(suffix)].rstrip("-_") + suffix

    def owns(self, job: dict[str, Any]) -> bool:
        tags = job.get("tags") or {}
        return all(tags.get(key) == value for key, value in self.tags().items())


def find_previous_job(
    hook: SidecarBatchHook, job_queue: str, job_name: str, identity: TaskIdentity
) -> dict[str, Any] | None:
    """Return the newest job of this task instance in ``job_queue``, in any state, or None."""
    candidates = [
        job
        for job in hook.describe_jobs(hook.list_job_ids(job_queue, job_name))
        if identity.owns(job)
    ]
    return max(candidates, key=lambda job: job.get("createdAt", 0), default=None)
