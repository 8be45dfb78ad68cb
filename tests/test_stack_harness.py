"""``scripts/stack.py``: the Airflow components start healthy and listen on loopback only, an
Asset event runs its consumer DAG, the triggerer restarts, nothing outlives a stop or a Ctrl-C."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def stack(airflow_env, tmp_path_factory):
    """One stack for the module's tests, with scheduled (and Asset-triggered) runs on."""
    running = AirflowStack(
        airflow_env, tmp_path_factory.mktemp("stack-logs"), scheduled_runs=True
    ).start()
    yield running
    running.stop()


def all_pids(stack: AirflowStack) -> set[int]:
    return set().union(*(group_pids(c.process.pid) for c in stack.components.values()))


@pytest.mark.e2e
def test_stack_is_healthy_and_listens_on_loopback_only(stack):
    assert set(stack.startup_seconds) == {"migrate", *COMPONENTS, "total"}
    health = stack.api("GET", "/api/v2/monitor/health")
    assert {health[key]["status"] for key in health} == {"healthy"}

    addresses = listening_addresses(all_pids(stack))
    assert addresses, "the api-server listens somewhere"
    assert all(is_loopback(a) for a in addresses), addresses


@pytest.mark.e2e
def test_an_asset_event_runs_the_check_dag_for_the_day_it_names(stack, endpoint):
    day, window, counts = "2013-05-05", {"start": "a", "end": "b"}, {"EWR": 3, "JFK": 4, "LGA": 5}
    s3 = endpoint.client("s3")
    manifests = {f"flights/date={day}/manifest.json": {"window": window, "row_count": 12}}
    for origin, rows in counts.items():
        key = f"flights_by_origin/date={day}/origin={origin}/manifest.json"
        manifests[key] = {"origin": origin, "window": window, "row_count": rows}
    for key, manifest in manifests.items():
        s3.put_object(Bucket="sidecar-exports", Key=key, Body=json.dumps(manifest).encode())
    stack.wait_for_dag("flights_by_origin")  # declares the Asset
    stack.unpause("flights_by_origin_check")
    try:
        assets = stack.api("GET", "/api/v2/assets?name_pattern=nyc_flights_by_origin")["assets"]
        event = {"asset_id": assets[0]["id"], "extra": {"day": day}}
        stack.api("POST", "/api/v2/assets/events", event)

        runs = "/api/v2/dags/flights_by_origin_check/dagRuns?run_type=asset_triggered"
        finished = wait_until(
            lambda: [
                r for r in stack.api("GET", runs)["dag_runs"] if r["state"] in ("success", "failed")
            ],
            120,
            "an Asset-triggered run of flights_by_origin_check",
        )
    finally:
        stack.pause("flights_by_origin_check")
    assert finished[0]["state"] == "success"
    xcom = (
        f"/api/v2/dags/flights_by_origin_check/dagRuns/{finished[0]['dag_run_id']}"
        "/taskInstances/check_row_counts/xcomEntries/return_value"
    )
    # Events queued earlier (a `dags test` of flights_by_origin emits one) join the same run.
    assert stack.api("GET", xcom)["value"][day] == {**counts, "day": 12}


@pytest.mark.e2e
def test_restart_replaces_the_triggerer_and_stop_leaves_no_process(stack, tmp_path):
    old = stack.components["triggerer"].process.pid

    seconds = stack.restart("triggerer")

    assert stack.components["triggerer"].process.pid != old
    assert not group_pids(old), "the old triggerer and its children are gone"
    assert seconds < stack.startup_timeout
    assert stack.api("GET", "/api/v2/monitor/health")["triggerer"]["status"] == "healthy"
    assert "restarted by stack.py" in stack.components["triggerer"].log.read_text()

    groups = [c.process.pid for c in stack.components.values()]
    stack.stop()
    assert all(not c.running for c in stack.components.values())
    assert not set().union(*(group_pids(pgid) for pgid in groups))


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
