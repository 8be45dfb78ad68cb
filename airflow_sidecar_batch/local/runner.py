"""Run the containers of one job attempt as local programs, the way ECS runs a task's containers.

A container starts once its ``dependsOn`` conditions hold (``START``, ``COMPLETE``, ``SUCCESS``).
When an essential container exits, the others get ``SIGTERM`` and, after a grace period,
``SIGKILL``; the attempt ends when every container has ended. Each container is a process group
of its own: when its main process exits, whatever it left behind in the group is killed, as a
container engine would.

Exit codes follow the container engines: a program killed by signal ``N`` reports ``128 + N``
(143 for ``SIGTERM``, 137 for ``SIGKILL``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = [
    "COMPLETE",
    "ESSENTIAL_CONTAINER_EXITED",
    "START",
    "SUCCESS",
    "ContainerOutcome",
    "ContainerSpec",
    "TaskRunner",
]

log = logging.getLogger(__name__)

START = "START"
COMPLETE = "COMPLETE"
SUCCESS = "SUCCESS"
_CONDITIONS = (START, COMPLETE, SUCCESS)

#: The reason ECS gives when a task stops because an essential container exited.
ESSENTIAL_CONTAINER_EXITED = "Essential container in task exited"

# The only host variables a container sees: enough to find programs, a home and a locale, and
# nothing that would make a local run pass where a Fargate task, with a clean environment, fails.
_HOST_VARIABLES = ("PATH", "HOME", "LANG")

# How long to wait, once every main process has ended, for output still in the pipes. Only a
# process that left its group (setsid) can hold a pipe open longer; its output is then not awaited.
_OUTPUT_DRAIN_SECONDS = 5.0


@dataclass
class ContainerSpec:
    """One container of a job attempt.

    :param name: the container's name, unique in the job.
    :param argv: the program and its arguments (entrypoint plus command).
    :param environment: the container's variables; they override the few taken from the host.
    :param essential: when it exits, every other container is stopped.
    :param depends_on: ``(containerName, condition)`` pairs, with condition ``START``,
        ``COMPLETE`` or ``SUCCESS``.
    """

    name: str
    argv: list[str]
    environment: dict[str, str]
    essential: bool = True
    depends_on: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ContainerOutcome:
    """How one container ended.

    :param name: the container's name.
    :param exit_code: its exit code, ``128 + N`` when killed by signal ``N``; None when it never
        started.
    :param reason: why it ended or never started, when that was not its own doing.
    """

    name: str
    exit_code: int | None
    reason: str | None


@dataclass
class _Container:
    spec: ContainerSpec
    process: subprocess.Popen[bytes] | None = None
    started: bool = False
    # Its main process has exited; its group may no longer be signalled.
    exited: bool = False
    ended: bool = False
    exit_code: int | None = None
    reason: str | None = None
    reader: threading.Thread | None = None

    def outcome(self) -> ContainerOutcome:
        return ContainerOutcome(self.spec.name, self.exit_code, self.reason)


class TaskRunner:
    """Run the containers of one job attempt, as an ECS task runs them.

    :param containers: the containers, in definition order.
    :param on_output: called with ``(container name, line)`` for each line a container prints on
        stdout or stderr, in the order printed, from a reader thread of that container.
    :param on_started: called with a container's name once its process is spawned, before any of
        its output is handed to ``on_output``.
    :param wrap: turns a command line into the one to spawn, such as
        :meth:`~airflow_sidecar_batch.local.sandbox.NetworkSandbox.wrap`.
    :param stop_grace_seconds: how long a container has to exit after ``SIGTERM`` before it gets
        ``SIGKILL``.
    :param cwd: the working directory of the programs; this process's own when None.
    :raises ValueError: when names repeat, a dependency names an unknown container or condition,
        or dependencies form a cycle.
    """

    def __init__(
        self,
        containers: list[ContainerSpec],
        *,
        on_output: Callable[[str, str], None],
        on_started: Callable[[str], None] = lambda name: None,
        wrap: Callable[[list[str]], list[str]] = lambda argv: argv,
        stop_grace_seconds: float = 10.0,
        cwd: Path | None = None,
    ) -> None:
        _validate(containers)
        if stop_grace_seconds < 0:
            raise ValueError(f"stop_grace_seconds must be 0 or more, got {stop_grace_seconds}")
        self._containers = [_Container(spec) for spec in containers]
        self._by_name = {container.spec.name: container for container in self._containers}
        self._on_output = on_output
        self._on_started = on_started
        self._wrap = wrap
        self._grace = stop_grace_seconds
        self._cwd = cwd

        self._condition = threading.Condition()
        self._running = False
        self._finished = False
        self._stopped_reason: str | None = None
        self._container_stop_reason: str | None = None
        self._kill_at: float | None = None
        self._killed = False

    @property
    def stopped_reason(self) -> str | None:
        """Why the task was stopped (an essential container ended, or :meth:`stop`), if it was."""
        with self._condition:
            return self._stopped_reason

    def run(self) -> list[ContainerOutcome]:
        """Start the containers, wait until every one has ended, and say how each ended.

        :return: one outcome per container, in definition order.
        :raises RuntimeError: when called a second time; make a new runner per attempt.
        """
        with self._condition:
            if self._running:
                raise RuntimeError("this TaskRunner has already run; make one per job attempt")
            self._running = True

        while True:
            with self._condition:
                spawned = self._start_ready()
                if not spawned:
                    if all(container.ended for container in self._containers):
                        self._finished = True
                        break
                    self._condition.wait(self._seconds_until_kill())
                    self._kill_if_due()
                    continue
            # Outside the lock: the callback may call stop(), or wait on a lock of its caller's.
            for container in spawned:
                self._announce(container)

        self._drain_output()
        return [container.outcome() for container in self._containers]

    def stop(self, reason: str) -> None:
        """Stop every container: ``SIGTERM`` now, ``SIGKILL`` after the grace period.

        Containers not started yet never start. Safe to call from any thread, before or during
        :meth:`run`; only the first reason is kept, and a call after the run has ended does
        nothing.

        :param reason: recorded as the reason of every container it stops, such as the reason of
            a TerminateJob call.
        """
        with self._condition:
            if self._finished or self._stopped_reason is not None:
                return
            log.info("Stopping all containers: %s", reason)
            self._begin_stop(reason, reason)

    def _start_ready(self) -> list[_Container]:
        """Start or give up on each pending container whose fate is decided; return the started."""
        spawned = []
        changed = True
        # One container's start (or failure) can decide another's, so repeat until nothing moves.
        while changed:
            changed = False
            for container in self._containers:
                if container.started or container.ended:
                    continue
                ready, failure = self._dependencies(container)
                # A failed dependency is the more precise reason, even when the task is stopping.
                failure = failure or self._container_stop_reason
                if failure is not None:
                    self._never_start(container, failure)
                    changed = True
                elif ready:
                    if self._spawn(container):
                        spawned.append(container)
                    changed = True
        return spawned

    def _dependencies(self, container: _Container) -> tuple[bool, str | None]:
        """Return (all conditions hold, why one never will)."""
        ready = True
        for target_name, condition in container.spec.depends_on:
            target = self._by_name[target_name]
            if condition == START:
                if target.ended and not target.started:
                    return False, f"Dependency {target_name} did not start"
                ready = ready and target.started
                continue
            if not target.ended:
                ready = False
            elif not target.started:
                verb = "complete" if condition == COMPLETE else "succeed"
                return False, f"Dependency {target_name} did not {verb}"
            elif condition == SUCCESS and target.exit_code != 0:
                return False, f"Dependency {target_name} did not succeed"
        return ready, None

    def _spawn(self, container: _Container) -> bool:
        spec = container.spec
        environment = _environment(spec.environment)
        missing = _missing_program(spec.argv, environment.get("PATH"), self._cwd)
        if missing is not None:
            self._never_start(container, missing)
            return False

        try:
            argv = self._wrap(list(spec.argv))
            log.debug("Container %s: starting %s", spec.name, argv)
            process = subprocess.Popen(
                argv,
                env=environment,
                cwd=self._cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # A group of its own, so a signal reaches everything the program started.
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            self._never_start(container, f"Program not found: {exc.filename or spec.argv[0]}")
            return False
        except Exception as exc:
            # Anything raised here would leave the containers already started running unwatched.
            log.debug("Container %s could not start", spec.name, exc_info=True)
            self._never_start(container, f"Program could not start: {spec.argv[0]}: {exc}")
            return False

        container.process = process
        container.started = True
        log.info("Container %s started (pid %s)", spec.name, process.pid)
        threading.Thread(
            target=self._wait, args=(container, process), name=f"wait-{spec.name}", daemon=True
        ).start()
        return True

    def _announce(self, container: _Container) -> None:
        name = container.spec.name
        try:
            self._on_started(name)
        except Exception:
            log.exception("on_started failed for container %s", name)

        stream = container.process.stdout if container.process else None
        if stream is None:
            return
        container.reader = threading.Thread(
            target=self._read_output,
            args=(name, stream),
            name=f"output-{name}",
            daemon=True,
        )
        container.reader.start()

    def _read_output(self, name: str, stream: IO[bytes]) -> None:
        failing = False
        with stream:
            # readline on a buffered pipe returns whole lines, however long and however the
            # program split its writes; the last line may lack its newline.
            for raw in stream:
                line = raw[:-1] if raw.endswith(b"\n") else raw
                try:
                    self._on_output(name, line.decode("utf-8", errors="replace"))
                except Exception:
                    # Keep reading: a full pipe would block the program.
                    if not failing:
                        log.exception("on_output failed for container %s", name)
                    failing = True

    def _wait(self, container: _Container, process: subprocess.Popen[bytes]) -> None:
        # Wait without reaping: an unreaped process keeps its id, so its group id cannot be
        # given to another process while the group is signalled below.
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        with self._condition:
            container.exited = True
            _signal_group(process.pid, signal.SIGKILL)

        returncode = process.wait()

        with self._condition:
            container.exit_code = 128 - returncode if returncode < 0 else returncode
            container.ended = True
            log.info("Container %s exited with code %s", container.spec.name, container.exit_code)
            self._after_end(container)

    def _never_start(self, container: _Container, reason: str) -> None:
        container.ended = True
        container.reason = reason
        log.info("Container %s did not start: %s", container.spec.name, reason)
        self._after_end(container)

    def _after_end(self, container: _Container) -> None:
        name = container.spec.name
        if container.spec.essential and self._stopped_reason is None:
            if container.started:
                container.reason = container.reason or ESSENTIAL_CONTAINER_EXITED
                self._begin_stop(
                    ESSENTIAL_CONTAINER_EXITED, f"Stopped: essential container {name} exited"
                )
            else:
                why = f"essential container {name} did not start"
                self._begin_stop(f"Task stopped: {why}", f"Stopped: {why}")
        self._condition.notify_all()

    def _begin_stop(self, task_reason: str, container_reason: str) -> None:
        self._stopped_reason = task_reason
        self._container_stop_reason = container_reason
        self._kill_at = time.monotonic() + self._grace
        for container in self._containers:
            if container.started and not container.exited and container.process is not None:
                container.reason = container.reason or container_reason
                _signal_group(container.process.pid, signal.SIGTERM)
        self._condition.notify_all()

    def _seconds_until_kill(self) -> float | None:
        if self._kill_at is None or self._killed:
            return None
        return max(0.0, self._kill_at - time.monotonic())

    def _kill_if_due(self) -> None:
        if self._kill_at is None or self._killed or time.monotonic() < self._kill_at:
            return
        self._killed = True
        for container in self._containers:
            if container.started and not container.exited and container.process is not None:
                log.info(
                    "Container %s still running %ss after SIGTERM; sending SIGKILL",
                    container.spec.name,
                    self._grace,
                )
                _signal_group(container.process.pid, signal.SIGKILL)

    def _drain_output(self) -> None:
        deadline = time.monotonic() + _OUTPUT_DRAIN_SECONDS
        for container in self._containers:
            if container.reader is None:
                continue
            container.reader.join(max(0.0, deadline - time.monotonic()))
            if container.reader.is_alive():
                log.warning(
                    "Container %s ended but a process it left outside its group still holds "
                    "its output open; not waiting for more of its output",
                    container.spec.name,
                )


def _environment(variables: dict[str, str]) -> dict[str, str]:
    environment = {name: os.environ[name] for name in _HOST_VARIABLES if name in os.environ}
    # Python programs would otherwise hold their output back until they exit.
    environment["PYTHONUNBUFFERED"] = "1"
    environment.update(variables)
    return environment


def _missing_program(argv: list[str], path: str | None, cwd: Path | None) -> str | None:
    """Return why ``argv`` cannot be started, or None.

    Checked before spawning because a wrapper such as ``nsenter`` would turn a missing program
    into an exit code of its own instead of an error here.
    """
    if not argv:
        return "Program not found: the command line is empty (no entrypoint and no command)"
    program = argv[0]
    if os.sep in program:
        candidate = Path(program)
        if cwd is not None and not candidate.is_absolute():
            candidate = cwd / candidate
        found = candidate.is_file() and os.access(candidate, os.X_OK)
    else:
        found = shutil.which(program, path=path or os.defpath) is not None
    return None if found else f"Program not found: {program}"


def _signal_group(pid: int, signum: signal.Signals) -> None:
    # ProcessLookupError: every process of the group has ended. PermissionError: only processes
    # that changed user (setuid) are left, and they are not ours to signal.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _validate(containers: list[ContainerSpec]) -> None:
    names = [container.name for container in containers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"container names must be unique; repeated: {duplicates}")
    if not all(names):
        raise ValueError("every container needs a name")

    for container in containers:
        for target, condition in container.depends_on:
            if target not in names:
                raise ValueError(
                    f"container {container.name!r} depends on {target!r}, which is not a "
                    f"container of this job; containers: {names}"
                )
            if condition not in _CONDITIONS:
                raise ValueError(
                    f"container {container.name!r} depends on {target!r} with condition "
                    f"{condition!r}; expected one of {list(_CONDITIONS)}"
                )

    cycle = _find_cycle({c.name: [target for target, _ in c.depends_on] for c in containers})
    if cycle:
        raise ValueError(f"container dependencies form a cycle: {' -> '.join(cycle)}")


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for target in graph[name]:
            found = visit(target, [*path, name])
            if found:
                return found
        done.add(name)
        return None

    for name in graph:
        found = visit(name, [])
        if found:
            return found
    return None
