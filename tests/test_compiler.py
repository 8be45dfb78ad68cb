"""Compiling ECS task-definition habits into the Batch shape; refusing what has no equivalent."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from airflow_sidecar_batch.compiler import READINESS_ENV, compile_job_definition
from airflow_sidecar_batch.exceptions import JobDefinitionError

SEED = Path(__file__).resolve().parents[1].parent / "shared" / "inputs" / "seed-jobdef.json"
TASK = "ecsProperties.taskProperties[0]"


def ecs_definition(**task: Any) -> dict[str, Any]:
    """An ECS-flavoured definition: app with a health check, pipeline waiting for HEALTHY."""
    return {
        "jobDefinitionName": "sidecar",
        "type": "container",
        "orchestrationType": "ECS",
        "platformCapabilities": ["FARGATE"],
        "ecsProperties": {
            "taskProperties": [
                {
                    "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
                    "fargatePlatformConfiguration": {"platformVersion": "1.4.0"},
                    "cpu": "1024",
                    "memory": "2048",
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:1",
                            "essential": False,
                            "portMappings": [{"containerPort": 8080}],
                            "healthCheck": {
                                "command": ["CMD-SHELL", "curl -f http://localhost:8080/health"],
                                "interval": 5,
                                "retries": 4,
                            },
                        },
                        {
                            "name": "pipeline",
                            "image": "pipeline:1",
                            "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}],
                            "environment": [{"name": "TOKEN", "value": "s3cr3t-value"}],
                        },
                    ],
                    **task,
                }
            ]
        },
    }


def containers(request: dict[str, Any]) -> list[dict[str, Any]]:
    return request["ecsProperties"]["taskProperties"][0]["containers"]


def requirements(container: dict[str, Any]) -> dict[str, str]:
    return {r["type"]: r["value"] for r in container.get("resourceRequirements", [])}


def environment(container: dict[str, Any]) -> dict[str, str]:
    return {pair["name"]: pair["value"] for pair in container.get("environment", [])}


def test_seed_without_its_comment_compiles_with_six_conversions():
    if not SEED.exists():
        pytest.skip(f"the shared seed file is not here ({SEED}); only the project's CI has it")
    raw = json.loads(SEED.read_text(encoding="utf-8").replace(" # Payload", ""))

    compiled = compile_job_definition(raw)

    assert len(compiled.conversions) == 6
    app, pipeline = containers(compiled.request)
    assert "orchestrationType" not in compiled.request
    assert compiled.request["ecsProperties"]["taskProperties"][0]["platformVersion"] == "LATEST"
    assert "portMappings" not in app
    assert "healthCheck" not in app
    assert pipeline["dependsOn"] == [{"containerName": "main-app", "condition": "START"}]
    assert environment(pipeline)["SIDECAR_READY_URL"] == "http://localhost:8080/health"
    assert environment(pipeline)["SIDECAR_READY_RETRIES"] == "10"
    assert requirements(app) == requirements(pipeline) == {"VCPU": "0.5", "MEMORY": "1024"}


def test_batch_shaped_input_passes_unchanged():
    raw = ecs_definition()
    raw.pop("orchestrationType")
    task = raw["ecsProperties"]["taskProperties"][0]
    task["platformVersion"] = task.pop("fargatePlatformConfiguration")["platformVersion"]
    del task["cpu"], task["memory"]
    for container in task["containers"]:
        container.pop("portMappings", None)
        container.pop("healthCheck", None)
        container["resourceRequirements"] = [
            {"type": "VCPU", "value": "0.5"},
            {"type": "MEMORY", "value": "1024"},
        ]
    task["containers"][1]["dependsOn"][0]["condition"] = "START"

    compiled = compile_job_definition(raw)

    assert compiled.conversions == ()
    assert compiled.request == raw


def test_input_is_not_modified():
    raw = ecs_definition()
    before = copy.deepcopy(raw)

    compile_job_definition(raw)

    assert raw == before


def test_each_conversion_is_logged_once_at_info(caplog):
    caplog.set_level(logging.INFO, logger="airflow_sidecar_batch.compiler")

    compiled = compile_job_definition(ecs_definition())

    lines = [r.getMessage() for r in caplog.records if r.name == "airflow_sidecar_batch.compiler"]
    assert lines == list(compiled.conversions)
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name.endswith("compiler"))


def test_conversions_name_their_paths():
    conversions = compile_job_definition(ecs_definition()).conversions

    assert [c.split(" ", 1)[0] for c in conversions] == [
        "orchestrationType",
        f"{TASK}.fargatePlatformConfiguration.platformVersion",
        f"{TASK}.containers[0].portMappings",
        f"{TASK}.containers[1].dependsOn[0].condition",
        f"{TASK}.containers[0].healthCheck",
        f"{TASK}.cpu/memory",
    ]


def test_readiness_settings_take_ecs_defaults_for_missing_fields():
    pipeline = containers(compile_job_definition(ecs_definition()).request)[1]

    assert environment(pipeline) == {
        "TOKEN": "s3cr3t-value",
        "SIDECAR_READY_URL": "http://localhost:8080/health",
        "SIDECAR_READY_INTERVAL_SECONDS": "5",
        "SIDECAR_READY_RETRIES": "4",
        "SIDECAR_READY_START_PERIOD_SECONDS": "0",
        "SIDECAR_READY_TIMEOUT_SECONDS": "5",
    }
    assert set(READINESS_ENV.values()) <= set(environment(pipeline))


@pytest.mark.parametrize(
    ("command", "url"),
    [
        (["CMD-SHELL", "curl -fsS http://localhost:8080/health || exit 1"], None),
        (["CMD", "curl", "-f", "http://localhost:8080/health"], None),
        (["CMD", "/usr/bin/curl", "--fail", "http://127.0.0.1:9000/ready"], "ready"),
        (["CMD", "curl", "-f", "--url=http://localhost:8080/health"], None),
        (["CMD", "wget", "-q", "--spider", "http://localhost:8080/health"], None),
        (["CMD-SHELL", "wget -qO- http://localhost:8080/health || exit 1"], None),
        (["CMD-SHELL", "wget", "-q", "-O", "/dev/null", "http://localhost:8080/health"], None),
        (["CMD", "sh", "-c", "curl -f 'http://localhost:8080/health' || exit 1"], None),
        (["CMD-SHELL", "curl -f https://localhost:8443/health && echo ok"], "https"),
    ],
    ids=[
        "cmd-shell-curl",
        "cmd-curl",
        "absolute-curl",
        "curl-url-option",
        "cmd-wget-spider",
        "cmd-shell-wget",
        "cmd-shell-split-words",
        "sh-c-quoted",
        "https-and-then",
    ],
)
def test_health_commands_that_are_understood(command, url):
    raw = ecs_definition()
    containers(raw)[0]["healthCheck"]["command"] = command

    pipeline = containers(compile_job_definition(raw).request)[1]

    expected = {
        None: "http://localhost:8080/health",
        "ready": "http://127.0.0.1:9000/ready",
        "https": "https://localhost:8443/health",
    }[url]
    assert environment(pipeline)["SIDECAR_READY_URL"] == expected


@pytest.mark.parametrize(
    "command",
    [
        ["CMD", "python", "check.py"],
        ["CMD-SHELL", "pg_isready -h localhost"],
        ["NONE"],
        ["CMD-SHELL", "curl -f http://localhost:$PORT/health"],
        ["CMD", "curl", "-f", "localhost:8080/health"],
        ["CMD", "curl", "http://localhost:8080/a", "http://localhost:8080/b"],
        ["CMD-SHELL", "curl 'http://localhost:8080/health"],
        "curl -f http://localhost:8080/health",
        [],
    ],
    ids=[
        "python-script",
        "pg-isready",
        "none",
        "shell-variable",
        "no-scheme",
        "two-urls",
        "unbalanced-quote",
        "not-a-list",
        "empty",
    ],
)
def test_health_commands_that_are_refused(command):
    raw = ecs_definition()
    containers(raw)[0]["healthCheck"]["command"] = command

    with pytest.raises(JobDefinitionError, match=r"healthCheck\.command: no http:// URL") as info:
        compile_job_definition(raw)

    assert "CMD-SHELL" in str(info.value)  # the fix shows what to write instead


def test_healthy_without_a_health_check_is_refused():
    raw = ecs_definition()
    del containers(raw)[0]["healthCheck"]

    with pytest.raises(
        JobDefinitionError, match=r"dependsOn\[0\]\.condition: Batch has no HEALTHY"
    ):
        compile_job_definition(raw)


def test_healthy_on_two_containers_is_refused():
    raw = ecs_definition()
    side = copy.deepcopy(containers(raw)[0])
    side["name"] = "cache"
    containers(raw).append(side)
    containers(raw)[1]["dependsOn"].append({"containerName": "cache", "condition": "HEALTHY"})

    with pytest.raises(JobDefinitionError, match=r"dependsOn\[1\]\.containerName: .*already waits"):
        compile_job_definition(raw)


def test_existing_readiness_variables_are_refused_without_showing_values():
    raw = ecs_definition()
    containers(raw)[1]["environment"].append({"name": "SIDECAR_READY_URL", "value": "hidden-url"})

    with pytest.raises(JobDefinitionError, match="already sets SIDECAR_READY_URL") as info:
        compile_job_definition(raw)

    assert "hidden-url" not in str(info.value)
    assert "s3cr3t-value" not in str(info.value)


def test_bad_health_settings_are_refused():
    raw = ecs_definition()
    containers(raw)[0]["healthCheck"]["retries"] = 0

    with pytest.raises(JobDefinitionError, match=r"healthCheck\.retries: .*at least 1"):
        compile_job_definition(raw)


def test_health_check_nobody_waits_for_is_dropped():
    raw = ecs_definition()
    containers(raw)[1]["dependsOn"][0]["condition"] = "START"

    compiled = compile_job_definition(raw)

    assert "healthCheck" not in containers(compiled.request)[0]
    assert "SIDECAR_READY_URL" not in environment(containers(compiled.request)[1])
    assert any("no container waited for it" in c for c in compiled.conversions)


@pytest.mark.parametrize(
    ("cpu", "memory", "count", "expected"),
    [
        ("1024", "2048", 2, [("0.5", "1024"), ("0.5", "1024")]),
        (1024, 2048, 2, [("0.5", "1024"), ("0.5", "1024")]),
        ("1 vCPU", "2 GB", 2, [("0.5", "1024"), ("0.5", "1024")]),
        ("256", "512", 2, [("0.125", "256"), ("0.125", "256")]),
        ("4096", "8192", 3, [("1.5", "3072"), ("1.25", "2560"), ("1.25", "2560")]),
        ("512", "3072", 1, [("0.5", "3072")]),
        ("16 vcpu", "120 GB", 2, [("8", "61440"), ("8", "61440")]),
    ],
    ids=["units", "integers", "with-units", "smallest", "three-ways", "one", "largest"],
)
def test_task_size_is_split_across_containers(cpu, memory, count, expected):
    raw = ecs_definition(cpu=cpu, memory=memory)
    extra = [{"name": f"side{i}", "image": "side:1", "essential": False} for i in range(count)]
    containers(raw)[:] = [containers(raw)[1] | {"dependsOn": []}, *extra][:count]

    compiled = compile_job_definition(raw)

    shares = [
        (requirements(c)["VCPU"], requirements(c)["MEMORY"]) for c in containers(compiled.request)
    ]
    assert shares == expected
    task = compiled.request["ecsProperties"]["taskProperties"][0]
    assert "cpu" not in task
    assert "memory" not in task


def test_containers_with_their_own_requirements_keep_them():
    raw = ecs_definition()
    containers(raw)[0]["resourceRequirements"] = [
        {"type": "VCPU", "value": "0.25"},
        {"type": "MEMORY", "value": "512"},
    ]

    app, pipeline = containers(compile_job_definition(raw).request)

    assert requirements(app) == {"VCPU": "0.25", "MEMORY": "512"}
    assert requirements(pipeline) == {"VCPU": "0.75", "MEMORY": "1536"}


@pytest.mark.parametrize(
    ("task", "match"),
    [
        ({"cpu": "1024", "memory": "1024"}, r"\.cpu: not a Fargate task size .* 2048 to 8192"),
        ({"cpu": "3072", "memory": "8192"}, r"\.cpu: not a Fargate task size .* one of 0\.25"),
        ({"cpu": "lots", "memory": "2048"}, r"\.cpu: not a size \(found cpu 'lots'"),
        ({"cpu": "1024", "memory": "1.5 GiB"}, r"\.memory: not a size"),
        ({"cpu": True}, r"\.cpu: not a size"),
        (
            {
                "fargatePlatformConfiguration": {"platformVersion": "1.4.0"},
                "platformVersion": "1.3.0",
            },
            r"platformVersion: conflicts with",
        ),
    ],
    ids=["memory-too-small", "cpu-not-a-size", "cpu-word", "memory-unit", "cpu-bool", "versions"],
)
def test_sizes_and_versions_that_are_refused(task, match):
    with pytest.raises(JobDefinitionError, match=match):
        compile_job_definition(ecs_definition(**task))


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ({"fargatePlatformConfiguration": {}, "platformVersion": "1.4.0"}, "1.4.0"),
        ({"fargatePlatformConfiguration": {"platformVersion": "LATEST"}}, "LATEST"),
        ({"fargatePlatformConfiguration": {}}, None),
    ],
    ids=["empty-next-to-own", "moved", "empty-alone"],
)
def test_platform_version_moves_without_losing_an_explicit_one(task, expected):
    raw = ecs_definition(**task)
    del raw["ecsProperties"]["taskProperties"][0]["fargatePlatformConfiguration"]
    raw["ecsProperties"]["taskProperties"][0].update(task)

    result = compile_job_definition(raw).request["ecsProperties"]["taskProperties"][0]

    assert "fargatePlatformConfiguration" not in result
    assert result.get("platformVersion") == expected


def test_own_requirements_that_disagree_with_the_task_are_refused():
    raw = ecs_definition()
    for container in containers(raw):
        container["resourceRequirements"] = [
            {"type": "VCPU", "value": "1"},
            {"type": "MEMORY", "value": "1024"},
        ]

    with pytest.raises(JobDefinitionError, match=r"\.cpu: the containers' own VCPU add up to 2"):
        compile_job_definition(raw)


def test_every_refusal_is_reported_at_once():
    raw = ecs_definition(cpu="lots")
    containers(raw)[0]["healthCheck"]["command"] = ["CMD", "true"]

    with pytest.raises(JobDefinitionError, match="2 problems"):
        compile_job_definition(raw)


def test_task_size_on_ec2_is_not_held_to_fargate_sizes():
    raw = ecs_definition(cpu="3072", memory="1000")
    raw["platformCapabilities"] = ["EC2"]

    app, pipeline = containers(compile_job_definition(raw).request)

    assert requirements(app) == requirements(pipeline) == {"VCPU": "1.5", "MEMORY": "500"}
