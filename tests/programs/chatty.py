"""A data pipeline stand-in: prints LINES numbered lines, four in each write, then exits CODE."""

import os
import sys
import time

lines = int(os.environ.get("LINES", "2000"))
# With LINE_INTERVAL, one line every that many seconds instead of four at a time.
interval = float(os.environ.get("LINE_INTERVAL", "0"))
for n in range(lines if interval else 0):
    print(f"line {n:05d}", flush=True)
    time.sleep(interval)
for start in range(0, 0 if interval else lines, 4):
    # One write of four lines: they reach the log in the same millisecond.
    sys.stdout.write("".join(f"line {n:05d}\n" for n in range(start, min(start + 4, lines))))
    sys.stdout.flush()
sys.exit(int(os.environ.get("CODE", "0")))
