from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_sidecar_batch.local.runner import ContainerSpec, TaskRunner
from airflow_sidecar_batch.local.sandbox import (
    NetworkSandbox,
    SandboxError,
    SharedHostNetwork,
    open_job_network,
)

needs_namespaces = pytest.mark.skipif(
    not NetworkSandbox.available(),
    reason=f"no network namespace can be made here: {NetworkSandbox.unavailable_reason()}",
)

# Binds 127.0.0.1:<port>, says so, and holds the port until its stdin closes.
HOLD_PORT = textwrap.dedent(
    """
    import socket, sys
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    print("listening", flush=True)
    sys.stdin.read()
    """
)


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Return whether process ``pid`` ended within ``timeout`` seconds (it need not be a child)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(pidfd)


@pytest.fixture
def sandbox() -> Iterator[NetworkSandbox]:
    with NetworkSandbox.create() as made:
        yield made


@needs_namespaces
def test_two_sandboxes_bind_the_same_port_at_once() -> None:
    with NetworkSandbox.create() as first, NetworkSandbox.create() as second:
        programs = [
            subprocess.Popen(
                box.wrap([sys.executable, "-c", HOLD_PORT, "8080"]),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for box in (first, second)
        ]
        try:
            assert [program.stdout.readline() for program in programs if program.stdout] == [
                "listening\n",
                "listening\n",
            ]
        finally:
            for program in programs:
                program.communicate(timeout=10)

    assert [program.returncode for program in programs] == [0, 0]


@needs_namespaces
def test_listen_socket_accepts_a_connection_from_inside(sandbox: NetworkSandbox) -> None:
    listener = sandbox.listen(0)
    port = listener.getsockname()[1]
    listener.settimeout(10)
    client = (
        "import socket, sys\n"
        "with socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10) as c:\n"
        "    c.sendall(b'hello from the sandbox')\n"
    )

    with listener:
        program = subprocess.Popen(sandbox.wrap([sys.executable, "-c", client, str(port)]))
        connection, _ = listener.accept()
        with connection:
            received = connection.recv(100)

    assert program.wait(timeout=10) == 0
    assert received == b"hello from the sandbox"


@needs_namespaces
def test_listen_reports_a_port_in_use_as_os_error(sandbox: NetworkSandbox) -> None:
    with sandbox.listen(0) as listener:
        port = listener.getsockname()[1]

        with pytest.raises(OSError, match=f"127.0.0.1:{port} in the job's network sandbox"):
            sandbox.listen(port)

        # The sandbox still answers after a refused request.
        sandbox.listen(0).close()


@needs_namespaces
def test_host_loopback_is_out_of_reach_from_inside(sandbox: NetworkSandbox) -> None:
    with socket.create_server(("127.0.0.1", 0)) as host_listener:
        port = host_listener.getsockname()[1]
        probe = (
            "import socket, sys\n"
            "try:\n"
            "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)\n"
            "except ConnectionRefusedError:\n"
            "    sys.exit(7)\n"
        )

        result = subprocess.run(sandbox.wrap([sys.executable, "-c", probe, str(port)]), timeout=10)

    assert result.returncode == 7


@needs_namespaces
def test_close_kills_the_holder_and_is_idempotent() -> None:
    sandbox = NetworkSandbox.create()
    pid = sandbox.holder_pid

    sandbox.close()
    sandbox.close()

    assert wait_for_exit(pid, timeout=0)
    with pytest.raises(SandboxError, match="closed"):
        sandbox.wrap(["true"])
    with pytest.raises(SandboxError, match="closed"):
        sandbox.listen(0)


@needs_namespaces
def test_holder_dies_with_its_parent() -> None:
    parent_source = (
        "import sys\n"
        "from airflow_sidecar_batch.local.sandbox import NetworkSandbox\n"
        "sandbox = NetworkSandbox.create()\n"
        "print(sandbox.holder_pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_source],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert parent.stdout is not None
    holder_pid = int(parent.stdout.readline())
    assert not wait_for_exit(holder_pid, timeout=0)

    parent.kill()
    parent.communicate()

    assert wait_for_exit(holder_pid, timeout=10)


@needs_namespaces
def test_wrap_keeps_the_program_and_its_arguments(sandbox: NetworkSandbox) -> None:
    argv = sandbox.wrap(["prog", "--flag", "value with spaces"])

    assert argv[0] == "nsenter"
    assert f"--net=/proc/{sandbox.holder_pid}/ns/net" in argv
    assert argv[-4:] == ["--", "prog", "--flag", "value with spaces"]


# A main app: serves its job's name on 127.0.0.1:8080, says it is ready through a FIFO.
MAIN_APP = textwrap.dedent(
    """
    import socket, sys
    server = socket.create_server(("127.0.0.1", 8080))
    with open(sys.argv[1], "w") as ready:
        ready.write("ready")
    while True:
        connection, _ = server.accept()
        with connection:
            connection.sendall(sys.argv[2].encode())
    """
)

# A pipeline: once the app is ready, reads from the app and from the endpoint, then exits.
PIPELINE = textwrap.dedent(
    """
    import socket, sys
    open(sys.argv[1]).read()
    for port in (8080, int(sys.argv[2])):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            print(port, connection.recv(100).decode(), flush=True)
    """
)


@needs_namespaces
def test_two_jobs_run_side_by_side_each_with_its_app_and_the_endpoint(tmp_path: Path) -> None:
    endpoint_port = 47123
    lines: dict[str, list[str]] = {"job-a": [], "job-b": []}
    outcomes: dict[str, list[int | None]] = {}

    def serve_endpoint(listener: socket.socket, job: str) -> None:
        with listener:
            connection, _ = listener.accept()
            with connection:
                connection.sendall(f"endpoint for {job}".encode())

    def run_job(job: str, sandbox: NetworkSandbox) -> None:
        listener = sandbox.listen(endpoint_port)
        listener.settimeout(10)
        threading.Thread(target=serve_endpoint, args=(listener, job), daemon=True).start()
        fifo = tmp_path / job
        os.mkfifo(fifo)
        runner = TaskRunner(
            [
                ContainerSpec(
                    "main-app",
                    [sys.executable, "-c", MAIN_APP, str(fifo), f"app of {job}"],
                    {},
                    essential=False,
                ),
                ContainerSpec(
                    "data-pipeline",
                    [sys.executable, "-c", PIPELINE, str(fifo), str(endpoint_port)],
                    {},
                    depends_on=[("main-app", "START")],
                ),
            ],
            on_output=lambda name, line: lines[job].append(f"{name}: {line}"),
            wrap=sandbox.wrap,
            stop_grace_seconds=2,
        )
        outcomes[job] = [outcome.exit_code for outcome in runner.run()]

    with NetworkSandbox.create() as first, NetworkSandbox.create() as second:
        threads = [
            threading.Thread(target=run_job, args=("job-a", first)),
            threading.Thread(target=run_job, args=("job-b", second)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert outcomes == {"job-a": [143, 0], "job-b": [143, 0]}
    for job in ("job-a", "job-b"):
        assert lines[job] == [
            f"data-pipeline: 8080 app of {job}",
            f"data-pipeline: {endpoint_port} endpoint for {job}",
        ]


@needs_namespaces
def test_open_job_network_gives_an_isolated_sandbox() -> None:
    with open_job_network() as network:
        assert isinstance(network, NetworkSandbox)
        assert network.isolated


def test_shared_host_network_runs_programs_as_they_are() -> None:
    with SharedHostNetwork() as network:
        assert network.wrap(["prog", "arg"]) == ["prog", "arg"]
        assert network.listen(8080) is None
        assert not network.isolated


def test_without_namespaces_create_explains_and_open_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(NetworkSandbox, "_probed", True)
    monkeypatch.setattr(NetworkSandbox, "_user_mode", None)
    monkeypatch.setattr(NetworkSandbox, "_unavailable", "missing on PATH: unshare")

    assert not NetworkSandbox.available()
    with pytest.raises(SandboxError, match="unavailable here: missing on PATH: unshare"):
        NetworkSandbox.create()
    assert isinstance(open_job_network(), SharedHostNetwork)
