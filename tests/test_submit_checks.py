"""The submit-side checks: job names, overrides, parameters and the request size."""

from __future__ import annotations

import datetime
import hashlib
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_sidecar_batch.exceptions import SubmitRequestError
from airflow_sidecar_batch.submit_checks import (
    check_overrides,
    check_parameters,
    check_submit_size,
    job_name_for,
)
from tests.definitions import valid_definition

# -- job names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("export-2024-01-01", "export-2024-01-01"),
        ("export 2024/01/01", "export-2024-01-01"),
        (
            "flights.export::manual__2024-01-01T00:00:00+00:00",
            "flights-export-manual__2024-01-01T00-00-00-00-00",
        ),
        ("__private", "private"),
        ("--é--x", "x"),
        ("Zürich", "Z-rich"),
    ],
    ids=[
        "valid",
        "spaces-and-slashes",
        "airflow-run-id",
        "leading-underscores",
        "leading-junk",
        "non-ascii",
    ],
)
def test_job_name_for(text, expected):
    assert job_name_for(text) == expected


def test_long_job_names_keep_a_hash_of_the_whole_text():
    text = "export-" + "x" * 200

    name = job_name_for(text)

    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    assert name == f"{('export-' + 'x' * 200)[:119]}-{digest}"
    assert len(name) == 128
    assert job_name_for(text + "y") != name


@pytest.mark.parametrize(
    "text", ["", "!!!", "---", "__"], ids=["empty", "punctuation", "hyphens", "underscores"]
)
def test_job_names_without_letters_or_digits_are_refused(text):
    with pytest.raises(SubmitRequestError, match="job_name: no letter or digit"):
        job_name_for(text)


@given(st.text(min_size=1, max_size=300))
def test_job_names_are_always_valid_or_refused(text):
    try:
        name = job_name_for(text)
    except SubmitRequestError:
        return
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", name)
    assert job_name_for(name) == name or len(name) == 128


# -- overrides, parameters, size ----------------------------------------------------------------


def test_overrides_become_batch_container_entries():
    entries = check_overrides(
        valid_definition(),
        {
            "data-pipeline": {
                "command": ["--date", "2024-01-01"],
                "environment": {"LOG_LEVEL": "debug"},
            },
            "main-app": {"environment": [{"name": "PORT", "value": "9090"}]},
        },
    )

    assert entries == [
        {
            "name": "data-pipeline",
            "command": ["--date", "2024-01-01"],
            "environment": [{"name": "LOG_LEVEL", "value": "debug"}],
        },
        {"name": "main-app", "environment": [{"name": "PORT", "value": "9090"}]},
    ]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            {"pipeline": {"command": []}},
            r"overrides\['pipeline'\]: .*use one of main-app, data-pipeline",
        ),
        (
            {"main-app": {"image": "x"}},
            r"overrides\['main-app'\]\.image: Batch overrides only command",
        ),
        ({"main-app": {"comand": []}}, "did you mean 'command'"),
        ({"main-app": {"command": "run"}}, r"\.command: must be a list of strings"),
        (
            {"main-app": {"environment": {"TOKEN": 42}}},
            r"\.environment\.TOKEN: values must be strings",
        ),
        ({"main-app": {"environment": {"AWS_BATCH_X": "1"}}}, "reserved for Batch"),
        ({"main-app": {"environment": "A=1"}}, r"\.environment: must be a mapping"),
        (
            {"main-app": {"resourceRequirements": [{"type": "CPU", "value": "1"}]}},
            r"\.resourceRequirements: must be a list of",
        ),
        (
            {"main-app": {"resourceRequirements": [{"type": "MEMORY", "value": "4096"}]}},
            r"overrides resourceRequirements: .*with 0.5 vCPU make the total MEMORY 1024 to 4096",
        ),
        ({"main-app": ["command"]}, r"overrides\['main-app'\]: must be a mapping of fields"),
    ],
    ids=[
        "unknown-container",
        "unknown-field",
        "misspelt-field",
        "command-string",
        "env-int",
        "env-reserved",
        "env-string",
        "requirement-type",
        "fargate-size",
        "not-a-mapping",
    ],
)
def test_bad_overrides_are_refused(overrides, match):
    with pytest.raises(SubmitRequestError, match=match):
        check_overrides(valid_definition(), overrides)


def test_override_errors_never_show_environment_values():
    with pytest.raises(SubmitRequestError) as info:
        check_overrides(valid_definition(), {"main-app": {"environment": {"A": 1, "B": ["x"]}}})

    assert "2 problems" in str(info.value)
    assert "['x']" not in str(info.value)


def test_parameters_with_default_or_value_pass():
    check_parameters(valid_definition(), {})
    request = valid_definition()
    del request["parameters"]
    check_parameters(request, {"EVENT_JSON": json.dumps({"date": "2024-01-01"})})


def test_missing_parameter_is_refused():
    request = valid_definition()
    del request["parameters"]

    with pytest.raises(
        SubmitRequestError,
        match=r"parameters\['EVENT_JSON'\]: missing; the command of data-pipeline",
    ):
        check_parameters(request, {})


def test_parameter_values_must_be_serialized_once():
    with pytest.raises(SubmitRequestError, match=r"json.dumps\(payload\), never str\(payload\)"):
        check_parameters(valid_definition(), {"EVENT_JSON": {"date": "2024-01-01"}})


def test_override_command_replaces_the_definitions_refs():
    request = valid_definition()
    del request["parameters"]
    overrides = check_overrides(request, {"data-pipeline": {"command": ["Ref::OTHER"]}})

    with pytest.raises(SubmitRequestError, match=r"parameters\['OTHER'\]"):
        check_parameters(request, {"EVENT_JSON": "{}"}, container_overrides=overrides)


def test_submit_request_under_the_limit_passes():
    check_submit_size({"jobName": "x", "parameters": {"EVENT_JSON": "x" * 30000}})


def test_submit_request_over_the_limit_names_size_limit_and_payload():
    request = {
        "jobName": "x",
        "jobQueue": "q",
        "parameters": {"EVENT_JSON": json.dumps({"rows": ["y" * 100] * 400})},
    }
    size = len(json.dumps(request).encode())

    with pytest.raises(
        SubmitRequestError, match=rf"found {size} bytes .* limit is 30720 bytes"
    ) as info:
        check_submit_size(request)

    assert "parameters.EVENT_JSON" in str(info.value)
    assert "shrink the payload" in str(info.value)


def test_unusual_values_do_not_break_the_size_check():
    check_submit_size({"jobName": "x", "when": datetime.date(2024, 1, 1)})
