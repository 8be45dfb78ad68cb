"""Tail many CloudWatch log streams at once, each event exactly once and in order.

``GetLogEvents`` is paged by forward token. A page can be empty while more events follow, so a
stream is read until the token comes back unchanged; the last token of each stream is kept, so
the next round starts where this one stopped and no event is read twice. The paging decisions
live in :class:`LogTail`; :func:`drain` and :func:`adrain` only carry requests to a sync or an
async client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airflow_sidecar_batch.job_status import LogStream

log = logging.getLogger(__name__)

#: Called with the stream and the message of each new event, in order.
Emit = Callable[[LogStream, str], None]

#: What reading a page can fail with; reading logs never decides the job's outcome.
_ReadError = (ClientError, BotoCoreError)

# A generator that yields GetLogEvents requests and is sent their answers (or the error).
_Steps = Generator[dict[str, Any], "dict[str, Any] | Exception", None]


@dataclass
class _Cursor:
    stream: LogStream
    token: str | None = None
    events: int = 0


class LogTail:
    """The read position in every log stream of a job.

    :param tokens: positions saved by :meth:`tokens` from an earlier tail, so a rebuilt tail goes
        on where the last one stopped.
    """

    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        self._saved = dict(tokens or {})
        self._cursors: dict[str, _Cursor] = {}

    @staticmethod
    def _key(stream: LogStream) -> str:
        return f"{stream.group}:{stream.name}"

    def track(self, streams: Iterable[LogStream]) -> None:
        """Start following streams not followed yet."""
        for stream in streams:
            key = self._key(stream)
            if key not in self._cursors:
                self._cursors[key] = _Cursor(stream, token=self._saved.get(key))
                log.debug("Following log stream %s of container %s", stream.name, stream.container)

    def regions(self) -> set[str | None]:
        """Return the Regions of the tracked streams (None: the connection's Region)."""
        return {cursor.stream.region for cursor in self._cursors.values()}

    def tokens(self) -> dict[str, str]:
        """Return each stream's position, JSON-native, for a later :class:`LogTail`."""
        return {key: c.token for key, c in self._cursors.items() if c.token is not None}

    def steps(self, emit: Emit, region: str | None = None) -> _Steps:
        """Yield the requests that read every stream to its current end, then emit the events.

        The events of one round are emitted by timestamp across streams, so the containers'
        lines interleave as they were printed; the sort is stable, so each stream keeps its
        own order.

        :param emit: called with each event's stream and message.
        :param region: read only the streams of this Region (None: the connection's).
        """
        read: list[tuple[int, LogStream, str]] = []
        cursors = [c for c in self._cursors.values() if c.stream.region == region]
        for cursor in cursors:
            while True:
                request: dict[str, Any] = {
                    "logGroupName": cursor.stream.group,
                    "logStreamName": cursor.stream.name,
                    "startFromHead": True,
                }
                if cursor.token is not None:
                    request["nextToken"] = cursor.token
                answer = yield request
                if isinstance(answer, Exception):
                    _report(cursor.stream, answer)
                    break
                for event in answer.get("events", []):
                    cursor.events += 1
                    read.append((event["timestamp"], cursor.stream, event["message"].rstrip("\n")))
                token = answer.get("nextForwardToken")
                if token is None or token == cursor.token:
                    break
                cursor.token = token
        for _, stream, message in sorted(read, key=lambda event: event[0]):
            emit(stream, message)


def _report(stream: LogStream, error: Exception) -> None:
    code = (
        error.response.get("Error", {}).get("Code")
        if isinstance(error, ClientError)
        else type(error).__name__
    )
    if code == "ResourceNotFoundException":
        # The awslogs driver creates the stream with the first line; until then there is none.
        log.debug("Log stream %s does not exist yet", stream.name)
    else:
        # Reading logs never decides the job's outcome; say so and try again next round.
        log.warning("Could not read log stream %s of %s: %s", stream.name, stream.container, code)


def drain(tail: LogTail, client: Any, emit: Emit, region: str | None = None) -> None:
    """Read every tracked stream of ``region`` to its end with a synchronous ``logs`` client."""
    steps = tail.steps(emit, region)
    request = next(steps, None)
    while request is not None:
        try:
            answer: dict[str, Any] | Exception = client.get_log_events(**request)
        except _ReadError as error:
            answer = error
        request = _send(steps, answer)


async def adrain(tail: LogTail, client: Any, emit: Emit, region: str | None = None) -> None:
    """Read every tracked stream of ``region`` to its end with an aiobotocore ``logs`` client."""
    steps = tail.steps(emit, region)
    request = next(steps, None)
    while request is not None:
        call: Awaitable[dict[str, Any]] = client.get_log_events(**request)
        try:
            answer: dict[str, Any] | Exception = await call
        except _ReadError as error:
            answer = error
        request = _send(steps, answer)


def _send(steps: _Steps, answer: dict[str, Any] | Exception) -> dict[str, Any] | None:
    try:
        return steps.send(answer)
    except StopIteration:
        return None
