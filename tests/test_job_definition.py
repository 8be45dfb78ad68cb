"""Fingerprints, prepare, and ensure: one revision per content, even under concurrency."""

from __future__ import annotations

import copy
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from airflow_sidecar_batch.exceptions import JobDefinitionError
from airflow_sidecar_batch.hooks import SidecarBatchHook
from airflow_sidecar_batch.job_definition import (
    FINGERPRINT_TAG,
    ensure_job_definition,
    fingerprint,
    prepare_job_definition,
    refresh_job_definition,
    tagged_request,
)

SEED = Path(__file__).resolve().parents[1].parent / "shared" / "inputs" / "seed-jobdef.json"
NAME = "sidecar-export"
ARN = f"arn:aws:batch:us-east-1:123456789012:job-definition/{NAME}"


def definition() -> dict[str, Any]:
    return {
        "jobDefinitionName": NAME,
        "type": "container",
        "platformCapabilities": ["FARGATE"],
        "ecsProperties": {
            "taskProperties": [
                {
                    "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
                    "containers": [
                        {
                            "name": "main-app",
                            "image": "main-app:1",
                            "essential": False,
                            "resourceRequirements": [
                                {"type": "VCPU", "value": "0.25"},
                                {"type": "MEMORY", "value": "1024"},
                            ],
                        },
                        {
                            "name": "data-pipeline",
                            "image": "data-pipeline:1",
                            "environment": [
                                {"name": "API_BASE_URL", "value": "http://localhost:8080"},
                                {"name": "OUTPUT_BUCKET", "value": "s3://bucket/exports/"},
                            ],
                            "resourceRequirements": [
                                {"type": "VCPU", "value": "0.25"},
                                {"type": "MEMORY", "value": "1024"},
                            ],
                        },
                    ],
                }
            ]
        },
    }


def reordered(value: Any) -> Any:
    """The same content with every mapping's keys and every environment list reversed."""
    if isinstance(value, dict):
        items = [(key, reordered(item)) for key, item in reversed(value.items())]
        return {key: (item[::-1] if key == "environment" else item) for key, item in items}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    return value


def pipeline(request: dict[str, Any]) -> dict[str, Any]:
    return request["ecsProperties"]["taskProperties"][0]["containers"][1]


class FakeBatch:
    """Job definitions kept in memory with Batch's semantics: every register adds a revision.

    Thread-safe. With ``rendezvous`` set, every caller's first describe returns what it saw
    only once all callers have described, and every register waits for all registers: the
    worst interleaving for concurrent ensures.
    """

    def __init__(self, rendezvous: int = 0) -> None:
        self.revisions: list[dict[str, Any]] = []
        self.registered_by: dict[str, int] = {}
        self.deregistered_by: dict[str, int] = {}
        self._lock = threading.Lock()
        self._described = threading.Barrier(rendezvous) if rendezvous else None
        self._registered = threading.Barrier(rendezvous) if rendezvous else None
        self._seen = threading.local()

    def describe_active_job_definitions(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            active = [
                copy.deepcopy(r)
                for r in self.revisions
                if r["jobDefinitionName"] == name and r["status"] == "ACTIVE"
            ]
        if self._described and not getattr(self._seen, "done", False):
            self._seen.done = True
            self._described.wait(timeout=10)
        return active

    def register_job_definition(self, request: dict[str, Any]) -> str:
        with self._lock:
            number = 1 + sum(
                r["jobDefinitionName"] == request["jobDefinitionName"] for r in self.revisions
            )
            arn = f"{ARN}:{number}"
            self.revisions.append(
                {
                    **copy.deepcopy(request),
                    "jobDefinitionArn": arn,
                    "revision": number,
                    "status": "ACTIVE",
                }
            )
            self.registered_by[arn] = threading.get_ident()
        if self._registered:
            self._registered.wait(timeout=10)
        return arn

    def deregister_job_definition(self, arn: str) -> None:
        with self._lock:
            for revision in self.revisions:
                if revision["jobDefinitionArn"] == arn:
                    revision["status"] = "INACTIVE"
            self.deregistered_by[arn] = threading.get_ident()

    def active(self) -> list[str]:
        return [r["jobDefinitionArn"] for r in self.revisions if r["status"] == "ACTIVE"]


# -- fingerprint ------------------------------------------------------------------------------


def test_fingerprint_ignores_key_order_and_environment_order():
    assert fingerprint(reordered(definition())) == fingerprint(definition())


def test_fingerprint_changes_with_one_environment_value():
    changed = definition()
    pipeline(changed)["environment"][1]["value"] = "s3://bucket/other/"

    assert fingerprint(changed) != fingerprint(definition())


def test_fingerprint_treats_omitted_essential_as_true():
    explicit = definition()
    pipeline(explicit)["essential"] = True

    assert fingerprint(explicit) == fingerprint(definition())


def test_fingerprint_ignores_its_own_tag():
    assert fingerprint(tagged_request(definition())) == fingerprint(definition())


def test_tagged_request_adds_the_fingerprint_and_keeps_other_tags():
    request = definition()
    request["tags"] = {"project": "sidecar"}

    tagged = tagged_request(request)

    assert tagged["tags"] == {"project": "sidecar", FINGERPRINT_TAG: fingerprint(request)}
    assert request["tags"] == {"project": "sidecar"}


# -- ensure, call sequences -------------------------------------------------------------------


def stubbed_hook() -> tuple[SidecarBatchHook, Stubber]:
    client = boto3.client(
        "batch",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    hook = SidecarBatchHook(aws_conn_id=None, region_name="us-east-1")
    hook.__dict__["conn"] = client  # conn is a cached_property: this is the client it returns
    return hook, Stubber(client)


def described(number: int, request: dict[str, Any]) -> dict[str, Any]:
    return {
        "jobDefinitionName": NAME,
        "jobDefinitionArn": f"{ARN}:{number}",
        "revision": number,
        "status": "ACTIVE",
        "type": "container",
        "tags": tagged_request(request)["tags"],
    }


def test_ensure_registers_when_missing_and_looks_again():
    hook, stubber = stubbed_hook()
    request = definition()
    query = {"jobDefinitionName": NAME, "status": "ACTIVE"}
    stubber.add_response("describe_job_definitions", {"jobDefinitions": []}, query)
    stubber.add_response(
        "register_job_definition",
        {"jobDefinitionName": NAME, "jobDefinitionArn": f"{ARN}:1", "revision": 1},
        tagged_request(request),
    )
    stubber.add_response(
        "describe_job_definitions", {"jobDefinitions": [described(1, request)]}, query
    )

    with stubber:
        arn = ensure_job_definition(hook, request)

    assert arn == f"{ARN}:1"
    stubber.assert_no_pending_responses()


def test_ensure_reuses_a_revision_with_the_same_fingerprint():
    hook, stubber = stubbed_hook()
    request = definition()
    other = definition()
    pipeline(other)["image"] = "data-pipeline:0"
    stubber.add_response(
        "describe_job_definitions",
        {"jobDefinitions": [described(1, other), described(2, request)]},
        {"jobDefinitionName": NAME, "status": "ACTIVE"},
    )

    with stubber:
        arn = ensure_job_definition(hook, reordered(request))

    assert arn == f"{ARN}:2"
    stubber.assert_no_pending_responses()


def test_ensure_that_lost_a_race_deregisters_only_its_own_revision():
    hook, stubber = stubbed_hook()
    request = definition()
    query = {"jobDefinitionName": NAME, "status": "ACTIVE"}
    stubber.add_response("describe_job_definitions", {"jobDefinitions": []}, query)
    stubber.add_response(
        "register_job_definition",
        {"jobDefinitionName": NAME, "jobDefinitionArn": f"{ARN}:2", "revision": 2},
        tagged_request(request),
    )
    stubber.add_response(
        "describe_job_definitions",
        {"jobDefinitions": [described(2, request), described(1, request)]},
        query,
    )
    stubber.add_response("deregister_job_definition", {}, {"jobDefinition": f"{ARN}:2"})

    with stubber:
        arn = ensure_job_definition(hook, request)

    assert arn == f"{ARN}:1"
    stubber.assert_no_pending_responses()


def test_three_ensures_of_the_same_definition_leave_one_revision():
    batch = FakeBatch()

    arns = {ensure_job_definition(batch, definition()) for _ in range(3)}

    assert arns == {f"{ARN}:1"}
    assert len(batch.revisions) == 1


def test_reordered_keys_and_environment_leave_one_revision():
    batch = FakeBatch()

    first = ensure_job_definition(batch, definition())
    second = ensure_job_definition(batch, reordered(definition()))

    assert first == second
    assert len(batch.revisions) == 1


def test_one_changed_environment_value_adds_exactly_one_revision():
    batch = FakeBatch()
    changed = definition()
    pipeline(changed)["environment"][0]["value"] = "http://localhost:9090"

    first = ensure_job_definition(batch, definition())
    second = ensure_job_definition(batch, changed)
    again = ensure_job_definition(batch, changed)

    assert len(batch.revisions) == 2
    assert first != second == again
    assert batch.active() == [first, second]


# -- ensure, concurrency ----------------------------------------------------------------------


@pytest.mark.parametrize("rendezvous", [True, False], ids=["worst-interleaving", "free-running"])
def test_twenty_concurrent_ensures_leave_at_most_two_active_revisions(rendezvous):
    batch = FakeBatch(rendezvous=20 if rendezvous else 0)

    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(ensure_job_definition, batch, definition()) for _ in range(20)]
        arns = {future.result(timeout=30) for future in futures}

    assert len(batch.active()) <= 2
    assert arns <= set(batch.active())
    # Only revisions a caller had just registered itself were deregistered, by that caller.
    assert all(batch.registered_by[arn] == who for arn, who in batch.deregistered_by.items())
    if rendezvous:
        assert len(batch.revisions) == 20
        assert batch.active() == [f"{ARN}:1"]
        assert arns == {f"{ARN}:1"}


def test_ensure_never_deregisters_revisions_it_did_not_make():
    batch = FakeBatch()
    other = definition()
    pipeline(other)["image"] = "data-pipeline:0"
    ensure_job_definition(batch, other)

    ensure_job_definition(batch, definition())

    assert batch.deregistered_by == {}
    assert len(batch.active()) == 2


# -- refresh after a stale ARN ----------------------------------------------------------------


def test_refresh_returns_a_new_arn_when_the_revision_was_deregistered():
    batch = FakeBatch()
    stale = ensure_job_definition(batch, definition())
    batch.deregister_job_definition(stale)

    fresh = refresh_job_definition(batch, definition(), stale)

    assert fresh == f"{ARN}:2"
    assert batch.active() == [fresh]


def test_refresh_returns_none_when_the_revision_is_still_active():
    batch = FakeBatch()
    arn = ensure_job_definition(batch, definition())

    assert refresh_job_definition(batch, definition(), arn) is None
    assert len(batch.revisions) == 1


# -- prepare ----------------------------------------------------------------------------------


def seed_text() -> str:
    if not SEED.exists():
        pytest.skip(f"the shared seed file is not here ({SEED}); only the project's CI has it")
    return SEED.read_text(encoding="utf-8")


def test_prepare_points_at_the_comment_in_the_seed():
    seed_text()

    with pytest.raises(JobDefinitionError, match=r"line 64, column \d+: JSON has no comments"):
        prepare_job_definition(SEED)


def test_prepare_of_the_seed_without_its_comment_is_clean_apart_from_conversions():
    text = seed_text().replace(" # Payload", "")

    compiled = prepare_job_definition(text)

    assert len(compiled.conversions) == 6
    assert compiled.request["jobDefinitionName"] == "fargate-multicontainer-sidecar"


def test_prepared_seed_registers_once():
    batch = FakeBatch()
    compiled = prepare_job_definition(seed_text().replace(" # Payload", ""))

    ensure_job_definition(batch, compiled.request)
    ensure_job_definition(batch, compiled.request)

    assert len(batch.revisions) == 1
    assert batch.revisions[0]["tags"][FINGERPRINT_TAG] == fingerprint(compiled.request)


def test_prepare_names_the_file_in_validation_errors(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("jobDefinitionName: x\ntype: single\n", encoding="utf-8")

    with pytest.raises(JobDefinitionError, match=rf"job definition in {path}: .*\n.*type: "):
        prepare_job_definition(path)


def test_prepare_accepts_a_mapping():
    compiled = prepare_job_definition(definition())

    assert compiled.conversions == ()
    assert json.dumps(compiled.request, sort_keys=True) == json.dumps(definition(), sort_keys=True)
