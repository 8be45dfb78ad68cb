"""Write container lines into the endpoint's CloudWatch Logs, as the awslogs driver would."""

from __future__ import annotations

import contextlib
import threading
import time

from moto.logs.exceptions import ResourceAlreadyExistsException
from moto.logs.models import logs_backends


class LogSink:
    """Put each line into moto's CloudWatch Logs backend of this process, one event per line.

    Events of one stream get non-decreasing timestamps, because moto orders a stream's events by
    timestamp and an older one put later would shift the forward tokens readers hold.
    """

    def __init__(self, account: str, region: str) -> None:
        self._backend = logs_backends[account][region]
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], int] = {}

    def open(self, group: str, stream: str) -> None:
        """Create the stream (and its group, as ``awslogs-create-group`` would) if missing."""
        with self._lock:
            if group not in self._backend.groups:
                self._backend.create_log_group(group, tags={})
            with contextlib.suppress(ResourceAlreadyExistsException):
                self._backend.create_log_stream(group, stream)
            self._last.setdefault((group, stream), 0)

    def write(self, group: str, stream: str, message: str) -> None:
        """Append one line to a stream opened with :meth:`open`."""
        with self._lock:
            stamp = max(int(time.time() * 1000), self._last[(group, stream)])
            self._last[(group, stream)] = stamp
            self._backend.put_log_events(group, stream, [{"timestamp": stamp, "message": message}])
