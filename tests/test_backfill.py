"""``scripts/backfill.py`` (``make backfill``): a short backfill through the real Airflow stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT, free_port

DAYS = ["2013-01-08", "2013-01-09", "2013-01-10"]


@pytest.mark.e2e
def test_backfill_runs_days_at_once_and_exports_each_new_york_day(
    airflow_env, flights_per_day, tmp_path
):
    run = subprocess.run(
        [
            *(sys.executable, str(ROOT / "scripts" / "backfill.py"), DAYS[0], DAYS[-1]),
            *("--max-active-runs", "3", "--max-jobs", "3", "--timeout", "400"),
            *("--port", str(free_port()), "--log-dir", str(tmp_path)),
        ],
        env=airflow_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]

    summary = json.loads((tmp_path / "last-run.json").read_text())
    days = {day["day"]: day for day in summary["days"]}
    assert list(days) == DAYS
    for day in DAYS:
        assert days[day]["run_state"] == "success", output[-6000:]
        assert days[day]["job_status"] == "SUCCEEDED"
        assert days[day]["rows"] == sum(flights_per_day[day].values())
        assert days[day]["objects"] == 2  # the data object and its manifest, nothing else
    # One job per day, and they ran side by side.
    assert summary["calls"]["batch.SubmitJob"] == len(DAYS)
    assert summary["peak_jobs"] >= 2, output[-6000:]
    assert summary["jobs_at_once"] >= 2

    # One line per day on stdout, and the endpoint the script started is gone.
    for day in DAYS:
        assert f"{day}  {days[day]['job_id']}" in run.stdout
    assert "stopped everything" in run.stdout
