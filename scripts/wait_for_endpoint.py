"""Wait until the local endpoint at the given URL answers its health route (30 s at most)."""

import sys
import time
import urllib.request

url = sys.argv[1].rstrip("/") + "/_local/health"
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen(url, timeout=1):
            break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"the local endpoint did not answer at {url} within 30 s")
        time.sleep(0.2)
