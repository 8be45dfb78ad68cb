"""Write container lines into the endpoint's CloudWatch Logs, as the awslogs driver would."""

from __future__ import annotations

import contextlib
import heapq
import logging
import threading
import time
from collections import Counter
from typing import Any

from moto.logs.exceptions import ResourceAlreadyExistsException
from moto.logs.models import logs_backends

from airflow_sidecar_batch.local.faults import Faults

log = logging.getLogger(__name__)


class LogSink:
    """Put each line into moto's CloudWatch Logs backend of this process, one event per line.

    Events of one stream get non-decreasing timestamps, because moto orders a stream's events by
    timestamp and an older one put later would shift the forward tokens readers hold.

    Under a ``delay_logs`` fault a line keeps the time it was printed as its timestamp but is put
    only when its delay has passed, by a thread of this sink; lines of one stream are put in the
    order printed, so a line never overtakes one held before it.

    :param faults: the fault rules to follow; none when None.
    """

    def __init__(self, account: str, region: str, faults: Faults | None = None) -> None:
        self._account = account
        self._region = region
        # Each stream lives in its container's awslogs-region, the endpoint's by default.
        self._backends: dict[tuple[str, str], Any] = {}
        self._faults = faults or Faults()
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], int] = {}
        self._jobs: dict[str, str] = {}
        # Held lines: (release time, sequence, group, stream, timestamp, message).
        self._held: list[tuple[float, int, str, str, int, str]] = []
        self._held_per_stream: Counter[tuple[str, str]] = Counter()
        self._last_release: dict[tuple[str, str], float] = {}
        self._sequence = 0
        self._released = threading.Condition(self._lock)
        self._releaser: threading.Thread | None = None

    def open(self, group: str, stream: str, job_name: str = "", region: str | None = None) -> None:
        """Create the stream (and its group, as ``awslogs-create-group`` would) if missing.

        :param job_name: the job whose container writes to the stream, for faults scoped to it.
        :param region: the container's ``awslogs-region``; the endpoint's Region when None.
        """
        with self._lock:
            backend = logs_backends[self._account][region or self._region]
            self._backends[(group, stream)] = backend
            if group not in backend.groups:
                backend.create_log_group(group, tags={})
            with contextlib.suppress(ResourceAlreadyExistsException):
                backend.create_log_stream(group, stream)
            self._last.setdefault((group, stream), 0)
            self._jobs[stream] = job_name

    def job_name(self, stream: str) -> str | None:
        """Return the name of the job writing to this stream, if this sink opened it."""
        with self._lock:
            return self._jobs.get(stream)

    def write(self, group: str, stream: str, message: str) -> None:
        """Append one line to a stream opened with :meth:`open`."""
        key = (group, stream)
        with self._lock:
            delay = self._faults.log_delay(self._jobs.get(stream, ""))
            stamp = max(int(time.time() * 1000), self._last[key])
            self._last[key] = stamp
            if delay <= 0 and not self._held_per_stream[key]:
                self._put(group, stream, stamp, message)
                return
            release = max(time.monotonic() + delay, self._last_release.get(key, 0.0))
            self._last_release[key] = release
            self._sequence += 1
            heapq.heappush(self._held, (release, self._sequence, group, stream, stamp, message))
            self._held_per_stream[key] += 1
            self._start_releaser()
            self._released.notify_all()
            if delay > 0:
                self._faults.record("delay_logs")

    def _put(self, group: str, stream: str, stamp: int, message: str) -> None:
        event = {"timestamp": stamp, "message": message}
        self._backends[(group, stream)].put_log_events(group, stream, [event])

    def _start_releaser(self) -> None:
        if self._releaser is None:
            self._releaser = threading.Thread(
                target=self._release_held, name="log-delay", daemon=True
            )
            self._releaser.start()

    def _release_held(self) -> None:
        with self._released:
            while True:
                if not self._held:
                    self._released.wait()
                    continue
                wait = self._held[0][0] - time.monotonic()
                if wait > 0:
                    self._released.wait(wait)
                    continue
                _, _, group, stream, stamp, message = heapq.heappop(self._held)
                self._held_per_stream[(group, stream)] -= 1
                try:
                    self._put(group, stream, stamp, message)
                except Exception:
                    # One lost line must not stop the lines of every other stream.
                    log.exception("Could not put a delayed line into log stream %s", stream)
