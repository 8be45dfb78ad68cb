from __future__ import annotations

import os
import random
import select
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_sidecar_batch.local.runner import (
    ESSENTIAL_CONTAINER_EXITED,
    ContainerOutcome,
    ContainerSpec,
    TaskRunner,
)

# Long enough for any of these programs, short enough that a hang fails rather than stalls.
DEADLINE_SECONDS = 20.0


def program(source: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(source), *args]


def sleeper(seconds: float = 60) -> list[str]:
    return program(f"import time; print('up', flush=True); time.sleep({seconds})")


def exits(code: int, text: str = "") -> list[str]:
    return program(f"import sys; print({text!r}); sys.exit({code})")


def container(
    name: str,
    argv: list[str],
    *,
    essential: bool = True,
    depends_on: list[tuple[str, str]] | None = None,
) -> ContainerSpec:
    return ContainerSpec(name, argv, {}, essential=essential, depends_on=depends_on or [])


class Recorder:
    """Collects what a runner reports: the lines of each container and the order of events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lines: dict[str, list[str]] = {}
        self.events: list[str] = []

    def output(self, name: str, line: str) -> None:
        with self._lock:
            if name not in self.lines:
                self.events.append(f"output:{name}")
            self.lines.setdefault(name, []).append(line)

    def started(self, name: str) -> None:
        with self._lock:
            self.events.append(f"started:{name}")


def make_runner(
    containers: list[ContainerSpec],
    recorder: Recorder,
    *,
    wrap: Callable[[list[str]], list[str]] = list,
    stop_grace_seconds: float = 2.0,
    cwd: Path | None = None,
) -> TaskRunner:
    return TaskRunner(
        containers,
        on_output=recorder.output,
        on_started=recorder.started,
        wrap=wrap,
        stop_grace_seconds=stop_grace_seconds,
        cwd=cwd,
    )


def run(runner: TaskRunner) -> list[ContainerOutcome]:
    """Run with a watchdog, so a runner that never ends fails the test instead of hanging it."""
    watchdog = threading.Timer(DEADLINE_SECONDS, runner.stop, args=("watchdog",))
    watchdog.start()
    try:
        outcomes = runner.run()
    finally:
        watchdog.cancel()
    assert runner.stopped_reason != "watchdog"
    return outcomes


def outcome_map(outcomes: list[ContainerOutcome]) -> dict[str, tuple[int | None, str | None]]:
    return {outcome.name: (outcome.exit_code, outcome.reason) for outcome in outcomes}


def wait_for_exit(pid: int, timeout: float) -> bool:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)


@pytest.fixture
def ready_fifo(tmp_path: Path) -> str:
    """A FIFO: one program writes to it once it is ready, another blocks reading until then."""
    path = tmp_path / "ready"
    os.mkfifo(path)
    return str(path)


def test_start_dependency_starts_after_the_target_and_essential_exit_stops_the_rest() -> None:
    recorder = Recorder()
    runner = make_runner(
        [
            container("main-app", sleeper(), essential=False),
            container("data-pipeline", exits(0, "exported"), depends_on=[("main-app", "START")]),
        ],
        recorder,
    )

    started = time.monotonic()
    outcomes = run(runner)

    assert time.monotonic() - started < 5
    assert outcomes == [
        ContainerOutcome("main-app", 143, "Stopped: essential container data-pipeline exited"),
        ContainerOutcome("data-pipeline", 0, ESSENTIAL_CONTAINER_EXITED),
    ]
    assert runner.stopped_reason == ESSENTIAL_CONTAINER_EXITED
    assert recorder.events.index("started:main-app") < recorder.events.index(
        "started:data-pipeline"
    )
    assert recorder.lines["data-pipeline"] == ["exported"]


def test_on_started_comes_before_any_output_of_that_container() -> None:
    recorder = Recorder()
    runner = make_runner(
        [container(f"c{index}", exits(0, "hello"), essential=False) for index in range(5)],
        recorder,
    )

    run(runner)

    for index in range(5):
        assert recorder.events.index(f"started:c{index}") < recorder.events.index(
            f"output:c{index}"
        )


def test_success_dependency_starts_once_the_target_exited_zero(tmp_path: Path) -> None:
    marker = tmp_path / "setup-done"
    setup = program(
        "import sys, time; time.sleep(0.2); open(sys.argv[1], 'w').close()", str(marker)
    )
    check = program("import os, sys; print(os.path.exists(sys.argv[1]))", str(marker))
    recorder = Recorder()

    outcomes = run(
        make_runner(
            [
                container("setup", setup, essential=False),
                container("pipeline", check, depends_on=[("setup", "SUCCESS")]),
            ],
            recorder,
        )
    )

    assert outcome_map(outcomes) == {
        "setup": (0, None),
        "pipeline": (0, ESSENTIAL_CONTAINER_EXITED),
    }
    assert recorder.lines["pipeline"] == ["True"]


def test_success_dependency_never_starts_after_a_failure() -> None:
    recorder = Recorder()
    runner = make_runner(
        [
            container("setup", exits(3), essential=False),
            container("pipeline", exits(0), depends_on=[("setup", "SUCCESS")]),
            container("reporter", exits(0), essential=False, depends_on=[("pipeline", "START")]),
        ],
        recorder,
    )

    outcomes = run(runner)

    assert outcome_map(outcomes) == {
        "setup": (3, None),
        "pipeline": (None, "Dependency setup did not succeed"),
        "reporter": (None, "Dependency pipeline did not start"),
    }
    assert runner.stopped_reason == "Task stopped: essential container pipeline did not start"
    assert "started:pipeline" not in recorder.events


def test_complete_dependency_starts_after_a_failure_too() -> None:
    outcomes = run(
        make_runner(
            [
                container("setup", exits(3), essential=False),
                container("pipeline", exits(0), depends_on=[("setup", "COMPLETE")]),
            ],
            Recorder(),
        )
    )

    assert outcome_map(outcomes) == {
        "setup": (3, None),
        "pipeline": (0, ESSENTIAL_CONTAINER_EXITED),
    }


def test_container_ignoring_sigterm_is_killed_after_the_grace_period(ready_fifo: str) -> None:
    # The app ignores SIGTERM, then says it is ready; only then does the pipeline exit.
    app = program(
        """
        import signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(sys.argv[1], "w") as ready:
            ready.write("ready")
        time.sleep(60)
        """,
        ready_fifo,
    )
    pipeline = program("import sys; open(sys.argv[1]).read()", ready_fifo)
    runner = make_runner(
        [
            container("main-app", app, essential=False),
            container("data-pipeline", pipeline, depends_on=[("main-app", "START")]),
        ],
        Recorder(),
        stop_grace_seconds=0.3,
    )

    started = time.monotonic()
    outcomes = run(runner)
    elapsed = time.monotonic() - started

    assert outcome_map(outcomes) == {
        "main-app": (137, "Stopped: essential container data-pipeline exited"),
        "data-pipeline": (0, ESSENTIAL_CONTAINER_EXITED),
    }
    assert 0.3 <= elapsed < 3


def test_stop_signals_reach_processes_the_container_started(ready_fifo: str) -> None:
    app = program(
        """
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.pid)
        with open(sys.argv[1], "w") as ready:
            ready.write("ready")
        time.sleep(60)
        """,
        ready_fifo,
    )
    pipeline = program("import sys; open(sys.argv[1]).read()", ready_fifo)
    recorder = Recorder()

    run(
        make_runner(
            [
                container("main-app", app, essential=False),
                container("data-pipeline", pipeline, depends_on=[("main-app", "START")]),
            ],
            recorder,
        )
    )

    assert wait_for_exit(int(recorder.lines["main-app"][0]), timeout=5)


def test_processes_left_behind_by_an_exited_container_are_ended() -> None:
    # The background child keeps the output pipe open; the run must not wait for it.
    leaver = program(
        """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.pid)
        """
    )
    recorder = Recorder()

    started = time.monotonic()
    outcomes = run(make_runner([container("leaver", leaver)], recorder))

    assert time.monotonic() - started < 3
    assert outcome_map(outcomes) == {"leaver": (0, ESSENTIAL_CONTAINER_EXITED)}
    assert wait_for_exit(int(recorder.lines["leaver"][0]), timeout=5)


def test_two_thousand_lines_arrive_in_order_with_long_lines_and_split_writes(
    tmp_path: Path,
) -> None:
    rng = random.Random(2013)
    expected = [
        f"{index}:" + ("é" * (40_000 + index) if index % 250 == 7 else "x" * rng.randrange(120))
        for index in range(2000)
    ]
    source = tmp_path / "lines.txt"
    source.write_text("\n".join(expected) + "\n", encoding="utf-8")
    # Writes of random sizes, cutting lines and UTF-8 characters alike, alternately on stdout and
    # stderr (one pipe, so their order is kept).
    writer = program(
        """
        import os, random, sys
        data = open(sys.argv[1], "rb").read()
        rng = random.Random(7)
        position = 0
        while position < len(data):
            size = rng.randrange(1, 20_000)
            os.write(rng.choice((1, 2)), data[position:position + size])
            position += size
        """,
        str(source),
    )
    recorder = Recorder()

    outcomes = run(make_runner([container("writer", writer)], recorder))

    assert outcomes[0].exit_code == 0
    assert sum(len(line.encode()) > 64 * 1024 for line in expected) >= 8
    assert recorder.lines["writer"] == expected


def test_output_is_decoded_leniently_and_the_last_line_needs_no_newline() -> None:
    writer = program(r"import os; os.write(1, b'caf\xc3\xa9\n\xff bad\n\nno newline')")
    recorder = Recorder()

    run(make_runner([container("writer", writer)], recorder))

    assert recorder.lines["writer"] == ["café", "\ufffd bad", "", "no newline"]


def test_output_arrives_while_the_program_runs() -> None:
    talker = program("import time; print('first', flush=True); time.sleep(60); print('late')")
    runner: TaskRunner | None = None

    def on_output(name: str, line: str) -> None:
        # Stopping on the first line ends the run early only if lines come as they are printed.
        if runner is not None:
            runner.stop(f"saw {line!r}")

    runner = TaskRunner([container("talker", talker)], on_output=on_output, stop_grace_seconds=1)

    started = time.monotonic()
    outcomes = run(runner)

    assert time.monotonic() - started < 5
    assert outcomes == [ContainerOutcome("talker", 143, "saw 'first'")]


def test_stop_from_another_thread_stops_everything_and_records_the_reason() -> None:
    started: list[str] = []
    both_started = threading.Event()

    def on_started(name: str) -> None:
        started.append(name)
        if len(started) == 2:
            both_started.set()

    runner = TaskRunner(
        [
            container("main-app", sleeper(), essential=False),
            container("data-pipeline", sleeper(), depends_on=[("main-app", "START")]),
            container("later", exits(0), essential=False, depends_on=[("main-app", "COMPLETE")]),
        ],
        on_output=lambda name, line: None,
        on_started=on_started,
        stop_grace_seconds=2,
    )

    def terminate() -> None:
        both_started.wait(timeout=10)
        runner.stop("Terminated by the user")

    threading.Thread(target=terminate).start()
    outcomes = run(runner)

    assert outcome_map(outcomes) == {
        "main-app": (143, "Terminated by the user"),
        "data-pipeline": (143, "Terminated by the user"),
        "later": (None, "Terminated by the user"),
    }
    assert runner.stopped_reason == "Terminated by the user"


def test_stop_before_run_starts_nothing_and_stop_after_run_changes_nothing() -> None:
    recorder = Recorder()
    runner = make_runner([container("a", exits(0)), container("b", exits(0))], recorder)

    runner.stop("cancelled before start")
    outcomes = run(runner)
    runner.stop("too late")

    assert outcome_map(outcomes) == {
        "a": (None, "cancelled before start"),
        "b": (None, "cancelled before start"),
    }
    assert runner.stopped_reason == "cancelled before start"
    assert recorder.events == []


def test_missing_essential_program_ends_the_task() -> None:
    recorder = Recorder()

    outcomes = run(
        make_runner(
            [
                container("main-app", sleeper(), essential=False),
                container(
                    "data-pipeline",
                    ["/nonexistent/pipeline", "--date", "2013-01-01"],
                    depends_on=[("main-app", "START")],
                ),
            ],
            recorder,
        )
    )

    assert outcome_map(outcomes) == {
        "main-app": (143, "Stopped: essential container data-pipeline did not start"),
        "data-pipeline": (None, "Program not found: /nonexistent/pipeline"),
    }


def test_missing_program_is_reported_before_any_wrapper_runs() -> None:
    wrapped: list[list[str]] = []

    def wrap(argv: list[str]) -> list[str]:
        wrapped.append(argv)
        return argv

    outcomes = run(
        make_runner(
            [
                container("helper", ["no-such-program-for-sidecar-tests"], essential=False),
                container("pipeline", exits(0)),
            ],
            Recorder(),
            wrap=wrap,
        )
    )

    assert outcome_map(outcomes) == {
        "helper": (None, "Program not found: no-such-program-for-sidecar-tests"),
        "pipeline": (0, ESSENTIAL_CONTAINER_EXITED),
    }
    assert [argv[0] for argv in wrapped] == [sys.executable]


def test_wrap_decides_the_command_line_spawned() -> None:
    recorder = Recorder()
    prefix = program("import sys; print('wrapped', sys.argv[1:])")

    run(
        make_runner(
            [container("c", [sys.executable, "arg"])], recorder, wrap=lambda argv: prefix + argv
        )
    )

    assert recorder.lines["c"] == [f"wrapped [{sys.executable!r}, 'arg']"]


def test_environment_is_the_containers_plus_a_small_allow_list(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SIDECAR_TEST_HOST_SECRET", "must not leak")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("HOME", str(tmp_path))
    show = program(
        "import os; print(sorted(os.environ)); print(os.environ['JOB_VALUE']); print(os.getcwd())"
    )
    recorder = Recorder()

    run(
        make_runner(
            [ContainerSpec("c", show, {"JOB_VALUE": "from the job"})],
            recorder,
            cwd=tmp_path,
        )
    )

    assert recorder.lines["c"] == [
        str(sorted(["HOME", "JOB_VALUE", "LANG", "PATH", "PYTHONUNBUFFERED"])),
        "from the job",
        str(tmp_path),
    ]


def test_run_twice_is_refused() -> None:
    runner = make_runner([container("a", exits(0))], Recorder())
    run(runner)

    with pytest.raises(RuntimeError, match="already run"):
        runner.run()


@pytest.mark.parametrize(
    ("containers", "match"),
    [
        ([container("a", ["x"]), container("a", ["y"])], r"unique; repeated: \['a'\]"),
        ([container("", ["x"])], "needs a name"),
        ([container("a", ["x"], depends_on=[("b", "START")])], "'b', which is not a container"),
        (
            [container("a", ["x"]), container("b", ["x"], depends_on=[("a", "HEALTHY")])],
            "condition 'HEALTHY'; expected one of",
        ),
        (
            [
                container("a", ["x"], depends_on=[("c", "START")]),
                container("b", ["x"], depends_on=[("a", "START")]),
                container("c", ["x"], depends_on=[("b", "SUCCESS")]),
            ],
            "cycle: a -> c -> b -> a",
        ),
        ([container("a", ["x"], depends_on=[("a", "START")])], "cycle: a -> a"),
    ],
    ids=["duplicate", "no-name", "unknown-target", "healthy", "cycle", "self"],
)
def test_bad_containers_are_refused(containers: list[ContainerSpec], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TaskRunner(containers, on_output=lambda name, line: None)


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="stop_grace_seconds"):
        TaskRunner([], on_output=lambda name, line: None, stop_grace_seconds=-1)
