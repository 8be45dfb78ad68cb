"""``scripts/stack.py``: the Airflow components start healthy, listen on loopback only, the
triggerer restarts, and nothing outlives a stop or a Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from scripts.stack import COMPONENTS, AirflowStack
from tests.support import ROOT


def group_pids(pgid: int) -> set[int]:
    """The live processes of a process group (zombies, already dead, left out)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        state, _, pgrp = stat.rpartition(")")[2].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            pids.add(int(entry.name))
    return pids


def listening_addresses(pids: set[int]) -> set[str]:
    """Local addresses of the TCP sockets these processes listen on, as ``ip:port`` in hex."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addresses.add(fields[1])
    return addresses


def is_loopback(address: str) -> bool:
    host = address.partition(":")[0]
    if len(host) == 8:  # IPv4, little-endian hex: 127.x.x.x ends in 7F
        return host.endswith("7F")
    return host == "00000000000000000000000001000000"  # ::1


def processes_with(marker: str) -> set[int]:
    """Processes whose environment holds ``marker``: everything a test's harness started."""
    found = set()
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes():
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} not within {timeout:.0f} s"
        time.sleep(0.2)
    return result


@pytest.mark.e2e
def test_stack_starts_on_loopback_restarts_the_triggerer_and_stops_everything(
    airflow_env, tmp_path
):
    stack = AirflowStack(airflow_env, tmp_path / "logs")
    with stack:
        assert set(stack.startup_seconds) == {"migrate", *COMPONENTS, "total"}
        health = stack.api("GET", "/api/v2/monitor/health")
        assert {health[key]["status"] for key in health} == {"healthy"}

        groups = {name: c.process.pid for name, c in stack.components.items()}
        pids = set().union(*(group_pids(pgid) for pgid in groups.values()))
        addresses = listening_addresses(pids)
        assert addresses, "the api-server listens somewhere"
        assert all(is_loopback(a) for a in addresses), addresses

        old = groups["triggerer"]
        seconds = stack.restart("triggerer")
        new = stack.components["triggerer"].process.pid
        assert new != old
        assert not group_pids(old), "the old triggerer and its children are gone"
        assert seconds < stack.startup_timeout
        assert stack.api("GET", "/api/v2/monitor/health")["triggerer"]["status"] == "healthy"
        assert "restarted by stack.py" in (tmp_path / "logs" / "triggerer.log").read_text()
        groups["triggerer"] = new

    assert all(not c.running for c in stack.components.values())
    assert not set().union(*(group_pids(pgid) for pgid in groups.values()))


@pytest.mark.e2e
def test_ctrl_c_while_starting_stops_what_was_started(airflow_env, tmp_path):
    marker = f"STACK_TEST_MARKER={uuid.uuid4()}"
    name, _, value = marker.partition("=")
    harness = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "stack.py"), "--log-dir", str(tmp_path)],
        env={**airflow_env, name: value},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Interrupt once all four components are running, before they are healthy.
        wait_until(lambda: len(list(tmp_path.glob("*.log"))) == len(COMPONENTS), 60, "four logs")
        harness.send_signal(signal.SIGINT)
        output, _ = harness.communicate(timeout=60)
    finally:
        if harness.poll() is None:
            harness.kill()

    assert harness.returncode == 0, output
    assert "stopping" in output
    assert processes_with(marker) == set(), "a component outlived the harness"
