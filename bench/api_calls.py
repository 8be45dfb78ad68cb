"""Count the AWS calls one deferred job costs, on the local endpoint.

Runs the operator's deferred path (execute, the trigger, execute_complete) for one job whose
pipeline prints a line every few seconds for ``--seconds``, and prints the endpoint's call counts
per API. Usage: ``.venv/bin/python bench/api_calls.py --seconds 120 --waiter-delay 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airflow.sdk.exceptions import TaskDeferred  # noqa: E402

from tests.support import (  # noqa: E402
    connection_json,
    stand_in_definition,
    start_program_endpoint,
    stop_endpoint,
)
from tests.test_deferral import (  # noqa: E402
    CONN_ID,
    first_event,
    make_context,
    make_operator,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=120, help="how long the job runs")
    parser.add_argument("--waiter-delay", type=float, default=10.0)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-calls-"))
    endpoint = start_program_endpoint(folder, "app", "chatty")
    try:
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = connection_json(endpoint.url)
        # One line every 5 s: 24 lines over two minutes.
        lines = max(1, args.seconds // 5)
        env = {"LINES": str(lines), "LINE_INTERVAL": "5"}
        path = folder / "definition.json"
        path.write_text(json.dumps(stand_in_definition("bench-calls", env)))
        operator = make_operator(str(path), "bench-calls")
        operator.waiter_delay = args.waiter_delay
        operator.final_log_wait = 5.0
        context = make_context("bench")
        started = time.monotonic()
        try:
            operator.execute(context)
            raise SystemExit("the operator did not defer")
        except TaskDeferred as deferred:
            trigger = deferred.trigger
        result = operator.execute_complete(context, asyncio.run(first_event(trigger)))
        elapsed = time.monotonic() - started
        calls = endpoint.stats()["calls"]
    finally:
        stop_endpoint(endpoint)

    print(
        f"job {result['job_id']} {result['status']} in {elapsed:.0f} s, "
        f"waiter_delay {args.waiter_delay:g} s"
    )
    for api, count in sorted(calls.items()):
        if api.startswith(("batch.", "logs.")):
            print(f"  {api:32} {count:5d}")
    total = sum(c for a, c in calls.items() if a.startswith(("batch.", "logs.")))
    print(f"  {'total':32} {total:5d}")


if __name__ == "__main__":
    main()
