"""A data pipeline stand-in: prints LINES numbered lines, four in each write, then exits CODE."""

import os
import sys

lines = int(os.environ.get("LINES", "2000"))
for start in range(0, lines, 4):
    # One write of four lines: they reach the log in the same millisecond.
    sys.stdout.write("".join(f"line {n:05d}\n" for n in range(start, min(start + 4, lines))))
    sys.stdout.flush()
sys.exit(int(os.environ.get("CODE", "0")))
