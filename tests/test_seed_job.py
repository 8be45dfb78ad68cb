"""The blog post's job definition, as users paste it, through to a job on the local endpoint."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from airflow_sidecar_batch.hooks import SidecarBatchHook, client_settings
from airflow_sidecar_batch.job_definition import ensure_job_definition, prepare_job_definition
from tests.support import ROOT, connection_json
from tests.test_deferral import defer, first_event, make_context

SEED = ROOT.parent / "shared" / "inputs" / "seed-jobdef.json"
CONN_ID = "sidecar_seed_test"


@pytest.fixture
def seed_text() -> str:
    if not SEED.exists():
        pytest.skip(f"{SEED} is not here: the seed input ships beside the project, not in it")
    return SEED.read_text().replace(" # Payload", "")


@pytest.fixture
def hook(endpoint, monkeypatch) -> SidecarBatchHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", connection_json(endpoint.url))
    return SidecarBatchHook(**client_settings(CONN_ID, None, None, None))


def _renamed(text: str, name: str) -> dict:
    definition = prepare_job_definition(text).request
    return {**definition, "jobDefinitionName": name}


def _active(hook: SidecarBatchHook, name: str) -> list[dict]:
    return hook.describe_active_job_definitions(name)


def test_the_seed_registers_and_its_job_runs_this_projects_containers(
    seed_text, hook, endpoint, flights_per_day
):
    from airflow_sidecar_batch.operators import SidecarBatchOperator

    day = {"start": "2013-01-05T05:00:00+00:00", "end": "2013-01-06T05:00:00+00:00"}
    operator = SidecarBatchOperator(
        task_id="seed",
        job_definition=seed_text,
        job_queue="sidecar-local",
        job_name="seed",
        payload={"window": day, "output_uri": "s3://sidecar-exports/seed/2013-01-05/"},
        aws_conn_id=CONN_ID,
        waiter_delay=1,
        final_log_wait=1,
    )
    context = make_context("seed-run")

    trigger = defer(operator, context)
    result = operator.execute_complete(context, asyncio.run(first_event(trigger)))

    job = endpoint.client("batch").describe_jobs(jobs=[trigger.job_id])["jobs"][0]
    containers = {c["name"]: c for c in job["ecsProperties"]["taskProperties"][0]["containers"]}
    manifest = json.loads(
        endpoint.client("s3")
        .get_object(Bucket="sidecar-exports", Key="seed/2013-01-05/manifest.json")["Body"]
        .read()
    )
    assert result["status"] == "SUCCEEDED"
    assert containers["data-pipeline"]["exitCode"] == 0
    # The dataset's own count of flights scheduled on New York's 2013-01-05.
    assert manifest["row_count"] == sum(flights_per_day["2013-01-05"].values())
    # HEALTHY became START, and the pipeline waited for the app itself.
    depends = containers["data-pipeline"]["dependsOn"]
    assert depends == [{"containerName": "main-app", "condition": "START"}]


def test_ensure_three_times_leaves_one_revision(seed_text, hook):
    definition = _renamed(seed_text, "seed-ensure-same")

    arns = {ensure_job_definition(hook, definition) for _ in range(3)}

    assert len(arns) == 1
    assert len(_active(hook, "seed-ensure-same")) == 1


def test_reordered_keys_and_environment_leave_one_revision(seed_text, hook):
    definition = _renamed(seed_text, "seed-ensure-order")
    shuffled = json.loads(json.dumps(definition))
    shuffled = dict(reversed(list(shuffled.items())))
    for container in shuffled["ecsProperties"]["taskProperties"][0]["containers"]:
        container["environment"] = list(reversed(container.get("environment", [])))

    first = ensure_job_definition(hook, definition)
    second = ensure_job_definition(hook, shuffled)

    assert first == second
    assert len(_active(hook, "seed-ensure-order")) == 1


def test_one_changed_environment_value_adds_exactly_one_revision(seed_text, hook):
    definition = _renamed(seed_text, "seed-ensure-change")
    changed = json.loads(json.dumps(definition))
    app = changed["ecsProperties"]["taskProperties"][0]["containers"][0]
    app["environment"] = [{"name": "SERVER_LOG", "value": "debug"}]

    ensure_job_definition(hook, definition)
    ensure_job_definition(hook, changed)
    ensure_job_definition(hook, changed)

    assert len(_active(hook, "seed-ensure-change")) == 2


def test_twenty_concurrent_ensures_all_succeed_and_leave_at_most_two(seed_text, hook, endpoint):
    definition = _renamed(seed_text, "seed-ensure-race")
    settings = client_settings(CONN_ID, None, None, None)
    hooks = [SidecarBatchHook(**settings) for _ in range(20)]
    for each in hooks:
        each.conn  # noqa: B018 - make the clients here; creating them in threads races in boto3
    start = threading.Barrier(20)
    arns: list[str] = []
    errors: list[BaseException] = []

    def ensure(each: SidecarBatchHook) -> None:
        start.wait()
        try:
            arns.append(ensure_job_definition(each, definition))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=ensure, args=(each,)) for each in hooks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert len(arns) == 20
    assert len(_active(hook, "seed-ensure-race")) <= 2
