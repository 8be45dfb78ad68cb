"""Run the Airflow 3 components a real (scheduled or backfilled) run needs, on loopback only.

``airflow dags test`` runs a DAG inside one process. Scheduled runs and backfills need the real
components: an api-server (task workers call its execution API), a scheduler with the
LocalExecutor, a dag-processor (serializes the DAGs the scheduler reads) and, for deferred tasks,
a triggerer. :class:`AirflowStack` starts them as subprocesses of this one, each with its own log
file, waits until each is healthy, and stops them all, also on an error or Ctrl-C::

    with AirflowStack(env, log_dir) as stack:      # env: AIRFLOW_HOME, dags folder, connection
        stack.unpause("flights_daily_export")
        stack.airflow("backfill", "create", ...)
        stack.restart("triggerer")                 # e.g. to test a triggerer restart mid-job

From a shell, after ``source scripts/env.sh``::

    python scripts/stack.py --log-dir .stack      # Ctrl-C stops everything

What it sets on top of the given environment, and why:

- ``[core] executor = LocalExecutor`` and ``[core] parallelism`` (4 by default: on two cores a
  task mostly waits for its job, deferred or not, so a few more slots than cores pay off);
- ``[api] host``/``port`` (127.0.0.1 and a free port) and ``[core] execution_api_server_url``
  (``<api>/execution/``), the URL task workers report to; by default it would be
  ``http://localhost:8080/execution/``, whatever port the api-server got;
- ``[scheduler] use_job_schedule = False`` unless ``scheduled_runs=True``: the example DAGs
  catch up from 2013, so unpausing one for a backfill would otherwise also queue a scheduled run
  for every day since then. Backfills, manual runs and ``airflow dags trigger`` still run;
  Asset-triggered runs, made by the same part of the scheduler, need ``scheduled_runs=True``.
- ``--skip-serve-logs`` for the scheduler and the triggerer: their log servers bind every
  interface, and the api-server reads the task and trigger logs from this machine's files anyway.

The first start on a fresh ``AIRFLOW_HOME`` migrates its database (about 7 s more).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

#: Start order; they are stopped all at once.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: The key of each job-running component in ``GET /api/v2/monitor/health``.
_HEALTH_KEYS = {
    "scheduler": "scheduler",
    "dag-processor": "dag_processor",
    "triggerer": "triggerer",
}
_BIN = Path(sys.executable).parent


class StackError(RuntimeError):
    """Raised when a component does not start, dies, or the API answers an error."""


@dataclass
class _Component:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    # Wall-clock UTC at spawn: a heartbeat older than this belongs to an earlier process.
    spawned_at: dt.datetime | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class AirflowStack:
    """The api-server, scheduler (LocalExecutor), dag-processor and triggerer of one Airflow home.

    :param env: the environment of every component: ``AIRFLOW_HOME``, the dags folder, the
        connections (``AIRFLOW_CONN_*``) and whatever else the DAGs need.
    :param log_dir: where ``<component>.log`` files go; created if missing.
    :param parallelism: ``[core] parallelism``, the LocalExecutor's task slots.
    :param scheduled_runs: let the scheduler create scheduled runs of unpaused DAGs.
    :param startup_timeout: seconds to wait for every component to be healthy.
    :param stop_timeout: seconds a component gets to exit after SIGTERM before it is killed.
    :param airflow: the ``airflow`` executable; by default the one next to this interpreter.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        parallelism: int = 4,
        scheduled_runs: bool = False,
        startup_timeout: float = 120.0,
        stop_timeout: float = 15.0,
        airflow: Path | None = None,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.startup_seconds: dict[str, float] = {}
        self._token: str | None = None
        self._airflow = str(airflow or _BIN / "airflow")
        self.env = {
            **env,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(scheduled_runs),
        }
        host = ["--host", "127.0.0.1", "--port", str(self.port)]
        argvs = {
            "api-server": ["api-server", *host],
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }
        self.components = {
            name: _Component(name, [self._airflow, *argvs[name]], self.log_dir / f"{name}.log")
            for name in COMPONENTS
        }

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, *names: str) -> AirflowStack:
        """Start the named components (all by default) and wait until each is healthy.

        The first call migrates the database if needed. Calling again starts more: a backfill
        is best created on SQLite before the scheduler and the triggerer run (see
        ``scripts/backfill.py``). ``startup_seconds`` records the migration check, each
        component (seconds from the start of its call) and the ``total`` over all calls.
        Anything started is stopped again when this raises, Ctrl-C included.
        """
        wanted = names or COMPONENTS
        unknown = sorted(set(wanted) - set(COMPONENTS))
        if unknown:
            raise ValueError(
                f"no component {unknown[0]!r}; the components: {', '.join(COMPONENTS)}"
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        try:
            if "migrate" not in self.startup_seconds:
                self._migrate()
                self.startup_seconds["migrate"] = time.monotonic() - began
            for name in wanted:
                if not self.components[name].running:
                    self._spawn(self.components[name])
            self._wait_healthy(wanted, began)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds["total"] = self.startup_seconds.get("total", 0.0) + (
            time.monotonic() - began
        )
        return self

    def stop(self) -> None:
        """SIGTERM every component, wait up to ``stop_timeout``, then kill what is left.

        Each component runs in a process group of its own (its workers and trigger runners
        included), so nothing it started outlives it.
        """
        running = [c for c in self.components.values() if c.running]
        for component in running:
            _signal_group(component, signal.SIGTERM, leader_only=True)
        deadline = time.monotonic() + self.stop_timeout
        for component in running:
            _wait_or_kill(component, deadline)

    def restart(self, name: str) -> float:
        """Stop one component (SIGTERM, then kill) and start it again; return the seconds taken.

        Returns once the new process is healthy: for the triggerer, once it heartbeats, which is
        also when it starts picking up the triggers the old one ran (a triggerer that exits
        cleanly releases them at once). The new process appends to the same log file.
        """
        component = self.components[name]
        began = time.monotonic()
        if component.running:
            _signal_group(component, signal.SIGTERM, leader_only=True)
            _wait_or_kill(component, time.monotonic() + self.stop_timeout)
        with component.log.open("a") as log:
            log.write(f"\n==== restarted by stack.py at {_utcnow().isoformat()} ====\n")
        self._spawn(component)
        self._wait_healthy([name], began)
        return time.monotonic() - began

    # -- the API and the CLI ---------------------------------------------------------------------

    def api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Call the REST API (``/api/v2/...``) and return the decoded JSON answer."""
        if self._token is None:
            self._token = self._login()
        return self._call(method, path, body, {"Authorization": f"Bearer {self._token}"})

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        headers: Mapping[str, str],
    ) -> Any:
        request = urllib.request.Request(
            self.api_url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            detail = error.read()[:500].decode("utf-8", "replace")
            raise StackError(f"{method} {path} answered HTTP {error.code}: {detail}") from None

    def _login(self) -> str:
        # The simple auth manager (Airflow's default) writes each user's generated password to
        # this file when the api-server starts; a token from it is valid for a day.
        home = Path(self.env.get("AIRFLOW_HOME", Path.home() / "airflow"))
        passwords_file = self.env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE") or (
            home / "simple_auth_manager_passwords.json.generated"
        )
        try:
            passwords = json.loads(Path(passwords_file).read_text())
        except (OSError, ValueError) as error:
            raise StackError(
                f"cannot log in to {self.api_url}: no user passwords in {passwords_file} "
                f"({error}); this harness expects Airflow's simple auth manager"
            ) from None
        user = "admin" if "admin" in passwords else next(iter(passwords))
        credentials = {"username": user, "password": passwords[user]}
        return str(self._call("POST", "/auth/token", credentials, {})["access_token"])

    def airflow(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` CLI command against this stack's database; output is captured."""
        return subprocess.run(
            [self._airflow, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the dag-processor has serialized ``dag_id``; return its API record."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.api("GET", f"/api/v2/dags/{dag_id}")
            except StackError as error:
                if "HTTP 404" not in str(error) or time.monotonic() > deadline:
                    raise StackError(
                        f"DAG {dag_id!r} was not serialized within {timeout:.0f} s ({error}); "
                        f"see {self.components['dag-processor'].log} for import errors"
                    ) from None
            self.check_alive()
            time.sleep(0.5)

    def unpause(self, dag_id: str) -> bool:
        """Unpause ``dag_id`` once it is serialized; return whether it was paused before."""
        was_paused = bool(self.wait_for_dag(dag_id)["is_paused"])
        if was_paused:
            self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        return was_paused

    def pause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})

    # -- internals -------------------------------------------------------------------------------

    def _migrate(self) -> None:
        # check-migrations costs about 5 s, a migrate that finds nothing to do about 7 s.
        if self.airflow("db", "check-migrations", "--migration-wait-timeout", "0").returncode:
            migrated = self.airflow("db", "migrate", timeout=600)
            if migrated.returncode:
                raise StackError(f"airflow db migrate failed:\n{_tail(migrated.stderr)}")

    def _spawn(self, component: _Component) -> None:
        with component.log.open("ab") as log:
            # A session of its own: Ctrl-C in the terminal reaches only this harness, which then
            # stops the components in order, and stop() can signal each one's whole group.
            component.process = subprocess.Popen(
                component.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        component.spawned_at = _utcnow()

    def _wait_healthy(self, names: Sequence[str], began: float) -> None:
        waiting = list(names)
        deadline = time.monotonic() + self.startup_timeout
        while waiting:
            self.check_alive()
            health = self._health()
            for name in list(waiting):
                if health is not None and self._is_healthy(name, health):
                    self.startup_seconds[name] = time.monotonic() - began
                    waiting.remove(name)
            if waiting and time.monotonic() > deadline:
                logs = ", ".join(str(self.components[n].log) for n in waiting)
                raise StackError(
                    f"{', '.join(waiting)} not healthy after {self.startup_timeout:.0f} s; "
                    f"see {logs}"
                )
            if waiting:
                time.sleep(0.5)

    def _health(self) -> dict[str, Any] | None:
        try:
            # The execution API is what task workers need; the monitor reports heartbeats.
            urllib.request.urlopen(f"{self.api_url}/execution/health", timeout=2).close()
            with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=5) as r:
                return json.load(r)
        except (OSError, ValueError):
            return None

    def _is_healthy(self, name: str, health: Mapping[str, Any]) -> bool:
        if name == "api-server":
            return health.get("metadatabase", {}).get("status") == "healthy"
        key = _HEALTH_KEYS[name]
        entry = health.get(key) or {}
        beat = entry.get(f"latest_{key}_heartbeat")
        spawned = self.components[name].spawned_at
        return (
            entry.get("status") == "healthy"
            and beat is not None
            and spawned is not None
            and dt.datetime.fromisoformat(beat) >= spawned
        )

    def check_alive(self) -> None:
        """Raise StackError naming the first component that has exited, with its log's end."""
        for component in self.components.values():
            if component.process is not None and component.process.poll() is not None:
                end = _tail(component.log.read_text("utf-8", "replace"))
                raise StackError(
                    f"{component.name} exited with code {component.process.returncode}; "
                    f"the end of {component.log}:\n{end}"
                )


def _signal_group(component: _Component, signum: int, *, leader_only: bool = False) -> None:
    if component.process is None:
        return
    try:
        if leader_only:
            component.process.send_signal(signum)
        else:
            os.killpg(component.process.pid, signum)
    except ProcessLookupError:
        pass


def _wait_or_kill(component: _Component, deadline: float) -> None:
    if component.process is None:
        return
    with suppress(subprocess.TimeoutExpired):
        component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
    # Whatever is left of the group (a stuck leader, orphaned workers) is killed.
    _signal_group(component, signal.SIGKILL)
    component.process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so ``finally`` blocks stop what was started."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-dir", type=Path, default=Path(".stack"), help="component logs")
    parser.add_argument("--parallelism", type=int, default=4, help="LocalExecutor task slots")
    parser.add_argument(
        "--scheduled-runs", action="store_true", help="let the scheduler create scheduled runs"
    )
    args = parser.parse_args(argv)

    stack = AirflowStack(
        os.environ, args.log_dir, parallelism=args.parallelism, scheduled_runs=args.scheduled_runs
    )
    with sigterm_as_interrupt():
        try:
            stack.start()
            print(f"Airflow is up on {stack.api_url} in {_timings(stack)}; Ctrl-C stops it")
            print(f"Logs: {args.log_dir}/<component>.log", flush=True)
            while True:
                stack.check_alive()
                time.sleep(1)
        except KeyboardInterrupt:
            print("stopping", flush=True)
        except StackError as error:
            print(f"stack.py: {error}", file=sys.stderr)
            return 1
        finally:
            stack.stop()
    return 0


def _timings(stack: AirflowStack) -> str:
    seconds = stack.startup_seconds
    parts = ", ".join(f"{name} {seconds[name]:.1f}" for name in ("migrate", *COMPONENTS))
    return f"{seconds['total']:.1f} s ({parts})"


if __name__ == "__main__":
    sys.exit(main())
