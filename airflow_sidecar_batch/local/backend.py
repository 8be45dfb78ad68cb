"""The state of the local Batch service: job definitions, queues and jobs.

Everything lives in memory for the life of the endpoint. Answers have the shapes AWS gives for
``ecsProperties`` jobs, so the operator reads them exactly as it reads AWS's.
"""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from airflow_sidecar_batch.local.api import BatchApiError

#: The job queue the endpoint creates at start, so a job can be submitted right away.
DEFAULT_QUEUE = "sidecar-local"
_PAGE = 100


def now_ms() -> int:
    return int(time.time() * 1000)


class BatchBackend:
    """Job definitions, compute environments, queues and jobs of one account and Region.

    :param start_job: called with each submitted job's id and description; runs it.
    :param terminate_job: called to stop a job that may be running.
    """

    def __init__(
        self,
        region: str,
        account: str,
        start_job: Callable[[dict[str, Any]], None],
        terminate_job: Callable[[str, str], None],
    ) -> None:
        self.region = region
        self.account = account
        self._start_job = start_job
        self._terminate_job = terminate_job
        self.lock = threading.RLock()
        self.definitions: dict[str, list[dict[str, Any]]] = {}
        self.environments: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.create_compute_environment(computeEnvironmentName=DEFAULT_QUEUE, type="MANAGED")
        self.create_job_queue(
            jobQueueName=DEFAULT_QUEUE,
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": DEFAULT_QUEUE}],
        )

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:batch:{self.region}:{self.account}:{kind}/{name}"

    def handlers(self) -> dict[str, Callable[..., dict[str, Any]]]:
        """Return the operations this backend answers, by Batch operation name."""
        return {
            "RegisterJobDefinition": self.register_job_definition,
            "DescribeJobDefinitions": self.describe_job_definitions,
            "DeregisterJobDefinition": self.deregister_job_definition,
            "CreateComputeEnvironment": self.create_compute_environment,
            "DescribeComputeEnvironments": self.describe_compute_environments,
            "CreateJobQueue": self.create_job_queue,
            "DescribeJobQueues": self.describe_job_queues,
            "SubmitJob": self.submit_job,
            "DescribeJobs": self.describe_jobs,
            "ListJobs": self.list_jobs,
            "TerminateJob": self.terminate_job,
            "CancelJob": self.cancel_job,
            "ListTagsForResource": self.list_tags_for_resource,
        }

    # Job definitions

    def register_job_definition(self, **request: Any) -> dict[str, Any]:
        name = request["jobDefinitionName"]
        if "ecsProperties" not in request:
            raise BatchApiError(
                f"job definition {name!r} has no ecsProperties: the local endpoint runs "
                "multi-container (ecsProperties) jobs only"
            )
        _check_containers(request)
        with self.lock:
            revisions = self.definitions.setdefault(name, [])
            revision = len(revisions) + 1
            arn = self.arn("job-definition", f"{name}:{revision}")
            described = {
                **copy.deepcopy(request),
                "jobDefinitionArn": arn,
                "revision": revision,
                "status": "ACTIVE",
                "containerOrchestrationType": "ECS",
            }
            described.setdefault("parameters", {})
            described.setdefault("tags", {})
            revisions.append(described)
        return {"jobDefinitionName": name, "jobDefinitionArn": arn, "revision": revision}

    def _find_definition(self, reference: str) -> dict[str, Any] | None:
        """Find a revision by ARN, ``name:revision`` or ``name`` (the latest ACTIVE)."""
        if reference.startswith("arn:"):
            reference = reference.split("/", 1)[-1]
        name, _, revision = reference.partition(":")
        revisions = self.definitions.get(name, [])
        if revision:
            index = int(revision) - 1 if revision.isdigit() else -1
            return revisions[index] if 0 <= index < len(revisions) else None
        active = [r for r in revisions if r["status"] == "ACTIVE"]
        return active[-1] if active else None

    def describe_job_definitions(
        self,
        jobDefinitions: list[str] | None = None,
        jobDefinitionName: str | None = None,
        status: str | None = None,
        maxResults: int | None = None,
        nextToken: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            if jobDefinitions:
                found = [self._find_definition(ref) for ref in jobDefinitions]
                matches = [d for d in found if d is not None]
            else:
                names = [jobDefinitionName] if jobDefinitionName else sorted(self.definitions)
                matches = [d for n in names for d in self.definitions.get(n, [])]
            if status:
                matches = [d for d in matches if d["status"] == status]
            return _page(copy.deepcopy(matches), "jobDefinitions", maxResults, nextToken)

    def deregister_job_definition(self, jobDefinition: str) -> dict[str, Any]:
        with self.lock:
            found = self._find_definition(jobDefinition)
            if found is None:
                raise BatchApiError(f"job definition {jobDefinition!r} does not exist")
            found["status"] = "INACTIVE"
        return {}

    # Compute environments and queues

    def create_compute_environment(self, **request: Any) -> dict[str, Any]:
        name = request["computeEnvironmentName"]
        arn = self.arn("compute-environment", name)
        with self.lock:
            self.environments[name] = {
                **request,
                "computeEnvironmentArn": arn,
                "state": request.get("state", "ENABLED"),
                "status": "VALID",
            }
        return {"computeEnvironmentName": name, "computeEnvironmentArn": arn}

    def describe_compute_environments(self, **request: Any) -> dict[str, Any]:
        wanted = request.get("computeEnvironments")
        with self.lock:
            found = [
                e
                for n, e in self.environments.items()
                if not wanted or n in wanted or e["computeEnvironmentArn"] in wanted
            ]
        return _page(copy.deepcopy(found), "computeEnvironments", request.get("maxResults"), None)

    def create_job_queue(self, **request: Any) -> dict[str, Any]:
        name = request["jobQueueName"]
        arn = self.arn("job-queue", name)
        with self.lock:
            self.queues[name] = {
                **request,
                "jobQueueArn": arn,
                "state": request.get("state", "ENABLED"),
                "status": "VALID",
            }
        return {"jobQueueName": name, "jobQueueArn": arn}

    def describe_job_queues(self, **request: Any) -> dict[str, Any]:
        wanted = request.get("jobQueues")
        with self.lock:
            found = [
                q
                for n, q in self.queues.items()
                if not wanted or n in wanted or q["jobQueueArn"] in wanted
            ]
        return _page(copy.deepcopy(found), "jobQueues", request.get("maxResults"), None)

    def _queue(self, reference: str) -> dict[str, Any]:
        name = reference.split("/", 1)[-1] if reference.startswith("arn:") else reference
        queue = self.queues.get(name)
        if queue is None:
            known = ", ".join(sorted(self.queues))
            raise BatchApiError(f"job queue {reference!r} does not exist; known queues: {known}")
        return queue

    # Jobs

    def submit_job(self, **request: Any) -> dict[str, Any]:
        name = request["jobName"]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", name):
            raise BatchApiError(
                f"jobName {name!r} is invalid: up to 128 letters, digits, hyphens and "
                "underscores, starting with a letter or digit"
            )
        with self.lock:
            queue = self._queue(request["jobQueue"])
            definition = self._find_definition(request["jobDefinition"])
            if definition is None or definition["status"] != "ACTIVE":
                raise BatchApiError(
                    f"job definition {request['jobDefinition']!r} is not an ACTIVE job definition"
                )
            job_id = str(uuid.uuid4())
            job = _new_job(job_id, request, definition, queue["jobQueueArn"], self.arn)
            self.jobs[job_id] = job
        self._start_job(copy.deepcopy(job))
        return {"jobArn": job["jobArn"], "jobName": name, "jobId": job_id}

    def update_job(self, job_id: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` to a job's description under the lock."""
        with self.lock:
            change(self.jobs[job_id])

    def describe_jobs(self, jobs: list[str]) -> dict[str, Any]:
        if len(jobs) > 100:
            raise BatchApiError(f"DescribeJobs takes at most 100 job ids, got {len(jobs)}")
        with self.lock:
            found = [copy.deepcopy(self.jobs[j]) for j in jobs if j in self.jobs]
        return {"jobs": found}

    def list_jobs(self, **request: Any) -> dict[str, Any]:
        with self.lock:
            jobs = list(self.jobs.values())
        if request.get("jobQueue"):
            queue_arn = self._queue(request["jobQueue"])["jobQueueArn"]
            jobs = [j for j in jobs if j["jobQueue"] == queue_arn]
        filters = {f["name"]: f["values"] for f in request.get("filters") or []}
        if "JOB_NAME" in filters:
            patterns = filters["JOB_NAME"]
            jobs = [j for j in jobs if any(_name_matches(j["jobName"], p) for p in patterns)]
        elif request.get("jobStatus"):
            jobs = [j for j in jobs if j["status"] == request["jobStatus"]]
        elif not filters:
            # AWS lists RUNNING jobs when neither a status nor a filter is given.
            jobs = [j for j in jobs if j["status"] == "RUNNING"]
        summaries = [_summary(j) for j in sorted(jobs, key=lambda j: -j["createdAt"])]
        token = request.get("nextToken")
        return _page(summaries, "jobSummaryList", request.get("maxResults"), token)

    def terminate_job(self, jobId: str, reason: str) -> dict[str, Any]:
        with self.lock:
            if jobId not in self.jobs:
                raise BatchApiError(f"job {jobId!r} does not exist")
            self.jobs[jobId]["isTerminated"] = True
        self._terminate_job(jobId, reason)
        return {}

    def cancel_job(self, jobId: str, reason: str) -> dict[str, Any]:
        # As on AWS, CancelJob ends only jobs still waiting; STARTING and RUNNING ones go on.
        with self.lock:
            status = self.jobs[jobId]["status"] if jobId in self.jobs else None
        if status in ("SUBMITTED", "PENDING", "RUNNABLE"):
            self.terminate_job(jobId=jobId, reason=reason)
        return {}

    def list_tags_for_resource(self, resourceArn: str) -> dict[str, Any]:
        with self.lock:
            for job in self.jobs.values():
                if job["jobArn"] == resourceArn:
                    return {"tags": dict(job.get("tags") or {})}
            definition = self._find_definition(resourceArn)
        if definition is None:
            raise BatchApiError(f"resource {resourceArn!r} does not exist")
        return {"tags": dict(definition.get("tags") or {})}


def _check_containers(request: dict[str, Any]) -> None:
    """Refuse what Batch refuses of a task's containers: repeated names, no essential one."""
    for task in request["ecsProperties"].get("taskProperties", []):
        names = [c.get("name") for c in task.get("containers", [])]
        repeated = sorted({n for n in names if names.count(n) > 1 and n is not None})
        if repeated:
            raise BatchApiError(f"container names must be unique; repeated: {', '.join(repeated)}")
        if not any(c.get("essential", True) for c in task.get("containers", [])):
            raise BatchApiError(
                "at least one container must be essential; mark one essential: true"
            )


def _name_matches(name: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _summary(job: dict[str, Any]) -> dict[str, Any]:
    keys = ("jobArn", "jobId", "jobName", "createdAt", "status", "statusReason", "startedAt")
    summary = {k: job[k] for k in keys if k in job}
    summary.update({k: job[k] for k in ("stoppedAt", "jobDefinition") if k in job})
    return summary


def _page(
    items: list[dict[str, Any]], key: str, max_results: int | None, token: str | None
) -> dict[str, Any]:
    start = int(token) if token and token.isdigit() else 0
    size = max_results or _PAGE
    answer: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        answer["nextToken"] = str(start + size)
    return answer


def _new_job(
    job_id: str,
    request: dict[str, Any],
    definition: dict[str, Any],
    queue_arn: str,
    arn: Callable[[str, str], str],
) -> dict[str, Any]:
    """Build the description of a job as AWS gives it right after SubmitJob."""
    ecs = copy.deepcopy(definition["ecsProperties"])
    overrides = (request.get("ecsPropertiesOverride") or {}).get("taskProperties") or []
    containers = ecs["taskProperties"][0]["containers"]
    for override in overrides[0].get("containers", []) if overrides else []:
        _apply_override(containers, override)
    for container in containers:
        container.setdefault("essential", True)

    parameters = {**definition.get("parameters", {}), **(request.get("parameters") or {})}
    tags = {**definition.get("tags", {}), **(request.get("tags") or {})}
    return {
        "jobArn": arn("job", job_id),
        "jobName": request["jobName"],
        "jobId": job_id,
        "jobQueue": queue_arn,
        "status": "SUBMITTED",
        "attempts": [],
        "createdAt": now_ms(),
        "retryStrategy": request.get("retryStrategy") or definition.get("retryStrategy") or {},
        "dependsOn": request.get("dependsOn", []),
        "jobDefinition": definition["jobDefinitionArn"],
        "parameters": parameters,
        "tags": tags,
        "propagateTags": request.get("propagateTags", definition.get("propagateTags", False)),
        "platformCapabilities": definition.get("platformCapabilities", []),
        "ecsProperties": ecs,
        "isCancelled": False,
        "isTerminated": False,
    }


def _apply_override(containers: list[dict[str, Any]], override: dict[str, Any]) -> None:
    names = [c["name"] for c in containers]
    target = override.get("name")
    if target not in names:
        raise BatchApiError(
            f"ecsPropertiesOverride names container {target!r}; the job definition has "
            f"{', '.join(names)}"
        )
    container = containers[names.index(target)]
    if "command" in override:
        container["command"] = list(override["command"])
    if "environment" in override:
        merged = {e["name"]: e.get("value", "") for e in container.get("environment", [])}
        merged.update({e["name"]: e.get("value", "") for e in override["environment"]})
        container["environment"] = [{"name": k, "value": v} for k, v in merged.items()]
    if "resourceRequirements" in override:
        container["resourceRequirements"] = list(override["resourceRequirements"])
