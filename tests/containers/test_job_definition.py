"""The sidecar job definition and the image mapping that runs its images on this machine."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import botocore.session
import botocore.validate
import pytest

from airflow_sidecar_batch.local.images import ImageMap, argv_for

from .conftest import CONTAINERS, load_readiness

readiness = load_readiness()
JOB_DEFINITION = CONTAINERS / "job-definition.json"
IMAGES = CONTAINERS / "images.yaml"
# Fargate task sizes: the memory (MiB) that each vCPU value accepts.
FARGATE_MEMORY = {
    Decimal("0.25"): range(512, 2049, 512),
    Decimal("0.5"): range(1024, 4097, 1024),
    Decimal("1"): range(2048, 8193, 1024),
}


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return json.loads(JOB_DEFINITION.read_text(encoding="utf-8"))


def containers_of(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    task = definition["ecsProperties"]["taskProperties"][0]
    return {container["name"]: container for container in task["containers"]}


def environment_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("environment", [])}


def test_is_valid_register_job_definition_input(definition: dict[str, Any]) -> None:
    model = botocore.session.get_session().get_service_model("batch")
    shape = model.operation_model("RegisterJobDefinition").input_shape

    botocore.validate.validate_parameters(definition, shape)
    assert len(JOB_DEFINITION.read_bytes()) < 24 * 1024


def test_pipeline_is_essential_and_starts_after_the_app(definition: dict[str, Any]) -> None:
    containers = containers_of(definition)

    assert list(containers) == ["main-app", "data-pipeline"]
    assert containers["main-app"]["essential"] is False
    assert containers["data-pipeline"]["essential"] is True
    # Batch knows START, COMPLETE and SUCCESS only; readiness is the pipeline's own job.
    assert containers["data-pipeline"]["dependsOn"] == [
        {"containerName": "main-app", "condition": "START"}
    ]


def test_payload_reaches_the_pipeline_as_its_argument(definition: dict[str, Any]) -> None:
    pipeline = containers_of(definition)["data-pipeline"]

    assert pipeline["command"] == ["Ref::EVENT_JSON"]
    assert "EVENT_JSON" in definition["parameters"]
    assert "command" not in containers_of(definition)["main-app"]


def test_task_size_is_a_valid_fargate_size(definition: dict[str, Any]) -> None:
    totals = {"VCPU": Decimal(0), "MEMORY": Decimal(0)}
    for container in containers_of(definition).values():
        for requirement in container["resourceRequirements"]:
            totals[requirement["type"]] += Decimal(requirement["value"])

    assert totals == {"VCPU": Decimal("0.5"), "MEMORY": Decimal(2048)}
    assert int(totals["MEMORY"]) in FARGATE_MEMORY[totals["VCPU"]]


def test_readiness_settings_parse_and_point_at_the_app(definition: dict[str, Any]) -> None:
    containers = containers_of(definition)
    port = environment_of(containers["main-app"])["PORT"]
    environ = environment_of(containers["data-pipeline"])

    settings = readiness.ReadinessSettings.from_environ(
        environ, environ["API_BASE_URL"] + "/health"
    )

    assert environ["API_BASE_URL"] == f"http://localhost:{port}"
    assert settings.url == f"http://localhost:{port}/health"
    assert settings.retries * settings.interval_seconds >= 30


@pytest.mark.parametrize(
    ("name", "program"),
    [("main-app", "main-app/app.py"), ("data-pipeline", "data-pipeline/pipeline.py")],
    ids=["main-app", "data-pipeline"],
)
def test_image_mapping_runs_each_image_as_its_program(
    definition: dict[str, Any], name: str, program: str
) -> None:
    image = containers_of(definition)[name]["image"]

    resolved = ImageMap.load(IMAGES).resolve(image)
    argv = argv_for(resolved, containers_of(definition)[name].get("command"))

    assert argv[1] == str(CONTAINERS.resolve() / program)
    assert Path(argv[1]).is_file()
    assert argv[2:] == containers_of(definition)[name].get("command", [])
