"""Wait until the endpoint this script's caller started answers its health route (30 s at most).

Usage: ``wait_for_endpoint.py URL PID LOG``. Fails at once, showing the endpoint's log, when the
process PID has ended: another program may hold the port, and the caller must not go on to use
an endpoint that is not its own.
"""

import os
import sys
import time
import urllib.request
from pathlib import Path

url, pid, log = sys.argv[1].rstrip("/") + "/_local/health", int(sys.argv[2]), Path(sys.argv[3])
deadline = time.monotonic() + 30
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(f"the local endpoint exited at start:\n{log.read_text()[-2000:]}")
    try:
        with urllib.request.urlopen(url, timeout=1):
            break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"the local endpoint did not answer at {url} within 30 s; see {log}")
        time.sleep(0.2)
