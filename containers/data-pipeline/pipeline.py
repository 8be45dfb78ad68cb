"""data-pipeline: export one window of NYC flights from the main app to S3.

This is the essential container of the flights export job. It is started as::

    python pipeline.py '<EVENT_JSON>'

with one argument, the payload::

    {"window": {"start": "2013-01-01T05:00:00+00:00", "end": "2013-01-02T05:00:00+00:00"},
     "output_uri": "s3://bucket/some/prefix/",
     "origin": "JFK"}

``window`` bounds are ISO 8601 instants with an offset (or ``Z``); the export holds the flights
whose scheduled departure lies in ``[start, end)``. ``origin`` (EWR, JFK or LGA) is optional.

Steps: delete ``<output_uri>manifest.json`` if present, wait until the main app answers (see
``readiness.py``), page through ``GET /flights``, write ``<output_uri>flights.ndjson`` (one flight
per line) and then, last, ``<output_uri>manifest.json`` with the row count, the window, the origin,
the SHA-256 of the data object, its key and the time of writing. A reader that finds a manifest
therefore finds the complete data next to it; a run that fails leaves no manifest.

Environment: ``API_BASE_URL`` (default ``http://localhost:8080``), the ``SIDECAR_READY_*`` settings
of ``readiness.py``, and what boto3 reads (``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``,
credentials).

Exit codes:

====  ============================================================================================
0     the data and its manifest were written
1     unexpected error
2     invalid input: the argument, a payload field, ``API_BASE_URL`` or a ``SIDECAR_READY_*`` value
3     the main app did not answer its health URL within the readiness deadline
4     the main app failed while the flights were read (error answer, malformed page, gone)
5     S3 refused a request or could not be reached
143   stopped by SIGTERM (128 + 15); no manifest was written
====  ============================================================================================

Progress goes to stdout, one line a step, prefixed ``data-pipeline:``. A failure ends with one line
``data-pipeline: error: <reason>`` on stderr.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError
from readiness import NotReadyError, ReadinessSettings, SettingsError, wait_until_ready

log = logging.getLogger("data_pipeline")

ORIGINS = ("EWR", "JFK", "LGA")
PAYLOAD_KEYS = ("window", "output_uri", "origin")
WINDOW_KEYS = ("start", "end")
DATA_NAME = "flights.ndjson"
MANIFEST_NAME = "manifest.json"
PAGE_LIMIT = 5000
PAGE_TIMEOUT_SECONDS = 60.0
# Exports larger than this spill from memory to a temporary file while they are written.
SPOOL_BYTES = 64 * 1024 * 1024
EXIT_TERMINATED = 128 + signal.SIGTERM


class PipelineError(Exception):
    """Base of the documented failures; ``exit_code`` is the process exit code."""

    exit_code = 1


class InputError(PipelineError):
    """Raised when the argument, a payload field or a setting is missing or invalid."""

    exit_code = 2


class AppNotReadyError(PipelineError):
    """Raised when the main app's health URL did not answer within the readiness deadline."""

    exit_code = 3


class AppError(PipelineError):
    """Raised when the main app answered a page request with an error or a malformed page."""

    exit_code = 4


class StorageError(PipelineError):
    """Raised when an S3 request failed."""

    exit_code = 5


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM; a BaseException so no ``except Exception`` eats it."""


@dataclass(frozen=True)
class Payload:
    """The validated job payload."""

    start: str
    end: str
    bucket: str
    prefix: str
    origin: str | None

    @property
    def data_key(self) -> str:
        return self.prefix + DATA_NAME

    @property
    def manifest_key(self) -> str:
        return self.prefix + MANIFEST_NAME

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_payload(argv: Sequence[str]) -> Payload:
    """Validate the command line (one argument, the payload JSON) and return the payload."""
    if len(argv) != 1:
        raise InputError(
            f"expected one argument, the payload JSON; got {len(argv)}; "
            """e.g. '{"window": {"start": ..., "end": ...}, "output_uri": "s3://bucket/prefix/"}'"""
        )
    try:
        document = json.loads(argv[0])
    except json.JSONDecodeError as error:
        raise InputError(
            f"payload: not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    payload = _mapping("payload", document, PAYLOAD_KEYS)
    window = _mapping("window", payload.get("window"), WINDOW_KEYS)

    start, end = (_instant(f"window.{key}", window.get(key)) for key in WINDOW_KEYS)
    if end <= start:
        raise InputError(
            f"window.end: {_quote(window['end'])} is not after window.start "
            f"{_quote(window['start'])}; give an end later than the start"
        )
    bucket, prefix = _output_uri(payload.get("output_uri"))
    return Payload(window["start"], window["end"], bucket, prefix, _origin(payload.get("origin")))


def _mapping(name: str, value: Any, keys: Sequence[str]) -> dict[str, Any]:
    if value is None:
        raise InputError(f"{name}: missing; give an object with {', '.join(keys)}")
    if not isinstance(value, dict):
        raise InputError(f"{name}: {_quote(value)} is not an object with {', '.join(keys)}")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise InputError(f"{name}.{unknown[0]}: unknown field; {name} accepts {', '.join(keys)}")
    return value


def _instant(name: str, value: Any) -> dt.datetime:
    example = "e.g. '2013-01-01T05:00:00+00:00'"
    if value is None:
        raise InputError(f"{name}: missing; give an ISO 8601 instant with an offset, {example}")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise InputError(f"{name}: {_quote(value)} is not an ISO 8601 instant, {example}") from None
    if parsed.tzinfo is None:
        raise InputError(f"{name}: {_quote(value)} has no UTC offset; add one or Z, {example}")
    return parsed


def _output_uri(value: Any) -> tuple[str, str]:
    example = "e.g. 's3://bucket/exports/2013-01-01/'"
    if value is None:
        raise InputError(f"output_uri: missing; give the S3 folder of the export, {example}")
    if not isinstance(value, str) or not value.startswith("s3://"):
        raise InputError(f"output_uri: {_quote(value)} is not an s3:// URI, {example}")
    bucket, _, prefix = value.removeprefix("s3://").partition("/")
    if not bucket:
        raise InputError(f"output_uri: {_quote(value)} names no bucket, {example}")
    if not value.endswith("/"):
        # The URI names a folder: the export is <output_uri>flights.ndjson, not a sibling key.
        raise InputError(f"output_uri: {_quote(value)} must end with '/', {example}")
    return bucket, prefix


def _origin(value: Any) -> str | None:
    if value is None or value in ORIGINS:
        return value
    raise InputError(f"origin: {_quote(value)} is not accepted; give one of {', '.join(ORIGINS)}")


def api_base_url(environ: Mapping[str, str]) -> str:
    url = environ.get("API_BASE_URL") or "http://localhost:8080"
    if not url.startswith(("http://", "https://")):
        raise InputError(f"API_BASE_URL={_quote(url)} is not an http:// or https:// URL")
    return url.rstrip("/")


def iter_pages(base_url: str, payload: Payload) -> Iterator[list[dict[str, Any]]]:
    """Yield the flights of the window one page at a time, following ``next_cursor``."""
    cursor: int | None = 0
    while cursor is not None:
        query = {"start": payload.start, "end": payload.end, "cursor": cursor, "limit": PAGE_LIMIT}
        if payload.origin:
            query["origin"] = payload.origin
        url = f"{base_url}/flights?{urllib.parse.urlencode(query)}"

        page = _get_json(url)
        flights, next_cursor = page.get("flights"), page.get("next_cursor")
        if not isinstance(flights, list) or not isinstance(next_cursor, (int, type(None))):
            raise AppError(f"GET {url} answered a page without a 'flights' list and 'next_cursor'")
        if next_cursor is not None and next_cursor <= cursor:
            raise AppError(f"GET {url} answered next_cursor {next_cursor}, not past {cursor}")
        yield flights
        cursor = next_cursor


def _get_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=PAGE_TIMEOUT_SECONDS) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        raise AppError(f"GET {url} answered HTTP {error.code}: {_error_text(error)}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise AppError(f"GET {url} failed: {reason}; the main app stopped answering") from None
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise AppError(f"GET {url} answered something other than a JSON object")
    return document


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return error.reason or "no reason given"


def write_rows(pages: Iterator[list[dict[str, Any]]], sink: IO[bytes]) -> tuple[int, str]:
    """Write each flight as one JSON line to ``sink``; return the row count and the SHA-256."""
    digest = hashlib.sha256()
    rows = 0
    for number, flights in enumerate(pages, start=1):
        chunk = b"".join(json.dumps(f, separators=(",", ":")).encode() + b"\n" for f in flights)
        digest.update(chunk)
        sink.write(chunk)
        rows += len(flights)
        log.info("page %d: %d rows", number, len(flights))
    return rows, digest.hexdigest()


class Bucket:
    """The S3 requests of one export, each turning a boto3 failure into a StorageError."""

    def __init__(self, client: Any, payload: Payload) -> None:
        self._client = client
        self._payload = payload

    def delete(self, key: str) -> None:
        self._call("delete", key, self._client.delete_object)

    def put(self, key: str, body: IO[bytes] | bytes, content_type: str) -> None:
        self._call("write", key, self._client.put_object, Body=body, ContentType=content_type)

    def _call(self, action: str, key: str, method: Any, **kwargs: Any) -> None:
        uri = self._payload.uri(key)
        try:
            method(Bucket=self._payload.bucket, Key=key, **kwargs)
        except ClientError as error:
            details = error.response.get("Error", {})
            raise StorageError(
                f"could not {action} {uri}: {details.get('Code')}: {details.get('Message')}"
            ) from None
        except BotoCoreError as error:
            raise StorageError(f"could not {action} {uri}: {error}") from None


def export(payload: Payload, base_url: str, readiness: ReadinessSettings, bucket: Bucket) -> int:
    """Run the export end to end; return the number of rows written."""
    # A manifest promises complete data, so the old one goes before any byte of new data.
    bucket.delete(payload.manifest_key)
    log.info("removed any previous %s", payload.uri(payload.manifest_key))

    try:
        wait_until_ready(readiness)
    except NotReadyError as error:
        raise AppNotReadyError(str(error)) from None

    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as data:
        rows, sha256 = write_rows(iter_pages(base_url, payload), data)
        size = data.tell()
        data.seek(0)
        bucket.put(payload.data_key, data, "application/x-ndjson")
    log.info("wrote %s (%d rows, %d bytes)", payload.uri(payload.data_key), rows, size)

    bucket.put(payload.manifest_key, _manifest(payload, rows, sha256), "application/json")
    log.info("wrote %s", payload.uri(payload.manifest_key))
    return rows


def _manifest(payload: Payload, rows: int, sha256: str) -> bytes:
    manifest = {
        "row_count": rows,
        "window": {"start": payload.start, "end": payload.end},
        "origin": payload.origin,
        "sha256": sha256,
        "data_key": payload.data_key,
        "created_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return json.dumps(manifest, indent=2).encode() + b"\n"


def _s3_client() -> Any:
    # Imported here: boto3 takes half a second to import, and invalid input should fail at once.
    import boto3

    return boto3.client("s3")


def run(argv: Sequence[str], environ: Mapping[str, str]) -> None:
    """Validate the inputs, then export; raises a PipelineError on a documented failure."""
    payload = parse_payload(argv)
    base_url = api_base_url(environ)
    try:
        readiness = ReadinessSettings.from_environ(environ, default_url=base_url + "/health")
    except SettingsError as error:
        raise InputError(str(error)) from None

    started = time.monotonic()
    log.info(
        "exporting [%s, %s) origin %s to s3://%s/%s",
        payload.start,
        payload.end,
        payload.origin or "any",
        payload.bucket,
        payload.prefix,
    )
    rows = export(payload, base_url, readiness, Bucket(_s3_client(), payload))
    log.info("done: %d rows in %.1f s", rows, time.monotonic() - started)


def _fail(reason: str, exit_code: int) -> int:
    print(f"data-pipeline: error: {reason}", file=sys.stderr, flush=True)
    return exit_code


def _unexpected(error: Exception) -> str:
    # Name where it happened: the one line must be enough to find the bug.
    frame = traceback.extract_tb(error.__traceback__)[-1]
    where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
    return f"unexpected {type(error).__name__} at {where}: {error}"


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("data-pipeline: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    _configure_logging()
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        run(sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ)
    except PipelineError as error:
        return _fail(str(error), error.exit_code)
    except Terminated:
        return _fail("stopped by SIGTERM before the export finished", EXIT_TERMINATED)
    except Exception as error:
        return _fail(_unexpected(error), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
