"""The ``sidecar-batch lint`` and ``render`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from airflow_sidecar_batch.cli import main
from airflow_sidecar_batch.job_definition import prepare_job_definition, tagged_request
from airflow_sidecar_batch.lint import lint_command, render_command

SEED = Path(__file__).resolve().parents[1].parent / "shared" / "inputs" / "seed-jobdef.json"


@pytest.fixture
def seed() -> Path:
    if not SEED.exists():
        pytest.skip(f"the shared seed file is not here ({SEED}); only the project's CI has it")
    return SEED


@pytest.fixture
def clean_seed(seed: Path, tmp_path: Path) -> Path:
    """The seed with only its '# Payload' comment removed."""
    path = tmp_path / "seed-jobdef.json"
    path.write_text(seed.read_text(encoding="utf-8").replace(" # Payload", ""), encoding="utf-8")
    return path


def batch_definition() -> dict:
    return {
        "jobDefinitionName": "sidecar",
        "type": "container",
        "platformCapabilities": ["FARGATE"],
        "ecsProperties": {
            "taskProperties": [
                {
                    "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:1",
                            "environment": [{"name": "TOKEN", "value": "s3cr3t-value"}],
                            "resourceRequirements": [
                                {"type": "VCPU", "value": "0.25"},
                                {"type": "MEMORY", "value": "512"},
                            ],
                        }
                    ],
                }
            ]
        },
    }


def test_lint_of_the_seed_points_at_line_64(seed, capsys):
    code = lint_command(str(seed))

    out = capsys.readouterr().out
    assert code == 1
    assert f"job definition in {seed}: 1 problem" in out
    assert "line 64, column 45: JSON has no comments" in out


def test_lint_of_the_seed_without_its_comment_reports_only_conversions(clean_seed, capsys):
    code = lint_command(str(clean_seed))

    out = capsys.readouterr().out
    assert code == 0
    assert f"{clean_seed}: 6 conversions:" in out
    assert f"{clean_seed}: 1 warning:" in out
    assert "Ref::EVENT_JSON has no default" in out
    assert "problem" not in out
    assert out.rstrip().endswith(f"{clean_seed}: valid RegisterJobDefinition request")


def test_lint_prints_no_log_lines(clean_seed, capsys):
    lint_command(str(clean_seed))

    assert "[info" not in capsys.readouterr().out


def test_lint_reports_every_problem_with_its_path(tmp_path, capsys):
    document = batch_definition()
    document["type"] = "single"
    del document["ecsProperties"]["taskProperties"][0]["executionRoleArn"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    code = lint_command(str(path))

    out = capsys.readouterr().out
    assert code == 1
    assert f"{path}: 2 problems:" in out
    assert "  - type: not an accepted value (found 'single')" in out
    assert "  - ecsProperties.taskProperties[0].executionRoleArn: missing" in out
    assert "s3cr3t-value" not in out


def test_lint_reports_what_cannot_be_converted(tmp_path, capsys):
    document = batch_definition()
    container = document["ecsProperties"]["taskProperties"][0]["containers"][0]
    container["healthCheck"] = {"command": ["CMD", "pg_isready"]}
    document["ecsProperties"]["taskProperties"][0]["containers"].append(
        {
            "name": "job",
            "image": "job:1",
            "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}],
        }
    )
    path = tmp_path / "health.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    code = lint_command(str(path))

    out = capsys.readouterr().out
    assert code == 1
    assert "healthCheck.command: no http:// URL checked with curl or wget" in out


def test_lint_reads_yaml(tmp_path, capsys):
    path = tmp_path / "definition.yaml"
    path.write_text(yaml.safe_dump(batch_definition()), encoding="utf-8")

    assert lint_command(str(path)) == 0
    assert "valid RegisterJobDefinition request" in capsys.readouterr().out


def test_lint_of_a_missing_file_says_so(tmp_path, capsys):
    assert lint_command(str(tmp_path / "nowhere.json")) == 1
    assert "cannot read" in capsys.readouterr().out


def test_render_prints_the_exact_request_ensure_sends(clean_seed, capsys):
    code = render_command(str(clean_seed))

    captured = capsys.readouterr()
    assert code == 0
    assert json.loads(captured.out) == tagged_request(prepare_job_definition(clean_seed).request)


def test_render_of_a_bad_file_prints_problems_to_stderr(seed, capsys):
    code = render_command(str(seed))

    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert "line 64" in captured.err


@pytest.mark.parametrize(
    ("command", "expected"), [("lint", 1), ("render", 1)], ids=["lint", "render"]
)
def test_cli_subcommands_exit_non_zero_on_the_seed(seed, command, expected, capsys):
    assert main([command, str(seed)]) == expected
    assert "line 64" in "".join(capsys.readouterr())
